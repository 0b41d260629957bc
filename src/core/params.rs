//! Protocol parameters (DESIGN.md §3.9). Configuration, not constants: the
//! simulator draws them per seed.

use super::io::Nanos;

const MS: Nanos = 1_000_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    /// Interval between forwards when idle.
    pub heartbeat: Nanos,
    /// Minimum election timeout and stickiness window.
    pub t_min: Nanos,
    /// Bound on each clock's rate error, in parts per million.
    pub rho_ppm: u64,
    /// Extra time a restarted replica refuses votes.
    pub drift_allowance: Nanos,
    /// Batches in flight per follower.
    pub window: usize,
    /// Resend an unacked LSN after this long.
    pub retransmit: Nanos,
    /// Records per forward, at most.
    pub max_batch: usize,
    /// Every record depends on every earlier LSN.
    pub strict: bool,
    /// A transfer not won by then is cancelled.
    pub transfer_timeout: Nanos,
}

impl Default for Params {
    fn default() -> Self {
        let t_min = 500 * MS;
        let rho_ppm = 10_000;
        Params {
            heartbeat: 50 * MS,
            t_min,
            rho_ppm,
            drift_allowance: 2 * t_min * rho_ppm / 1_000_000 + 10 * MS,
            window: 8,
            retransmit: 20 * MS,
            max_batch: 1024,
            strict: false,
            transfer_timeout: 2 * t_min,
        }
    }
}

impl Params {
    /// How long a lease lasts: `T_min (1 − ρ) / (1 + ρ)`.
    pub fn lease(&self) -> Nanos {
        let ppm = 1_000_000u128;
        let rho = self.rho_ppm as u128;
        (self.t_min as u128 * (ppm - rho) / (ppm + rho)) as Nanos
    }
}
