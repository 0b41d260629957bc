//! `traft bench`: measurements a user can run on their own machine.

pub mod floor;
