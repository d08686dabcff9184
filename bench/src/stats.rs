//! Percentiles of measured durations (nearest rank: every reported value is
//! one that was actually measured).

use std::time::Duration;

pub struct Summary {
    sorted: Vec<Duration>,
}

impl Summary {
    /// `None` when there are no samples.
    pub fn new(mut samples: Vec<Duration>) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        Some(Summary { sorted: samples })
    }

    /// The `p`th percentile, 0 < p <= 100.
    pub fn percentile(&self, p: f64) -> Duration {
        let n = self.sorted.len();
        let rank = (p / 100.0 * n as f64).ceil() as usize;
        self.sorted[rank.clamp(1, n) - 1]
    }

    pub fn median(&self) -> Duration {
        self.percentile(50.0)
    }

    pub fn max(&self) -> Duration {
        self.sorted[self.sorted.len() - 1]
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
