//! traft: TRaft — a Raft variant with merge-log elections, out-of-order commit
//! and apply, and generalized joint consensus — as a storage-and-replication
//! engine. The protocol is `docs/DESIGN.md`; code comments cite its sections.

pub mod apply;
pub mod bitmap;
pub mod core;
pub mod frame;
pub mod fuzz;
pub mod huge_pages;
pub mod ids;
pub mod linearizability;
pub mod node;
pub mod resp;
pub mod sim;
pub mod snapshot;
pub mod transport;
pub mod wal;

pub use bitmap::{BitmapError, TailBitmap};
pub use ids::{LeaderId, Lsn, NodeId, LSN_LIMIT};
pub mod bench;
