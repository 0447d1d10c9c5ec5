//! The one retry schedule of the platform: wait, double, up to a cap, start
//! over after a success. Every loop that waits for a dependency (migrations,
//! the RabbitMQ connection, a store while the database is down) uses it, so
//! they cannot drift apart.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    attempt: u32,
}

impl Backoff {
    /// `initial` is the first wait; each later one doubles, capped at `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            next: initial.min(max),
            attempt: 1,
        }
    }

    /// The number of the try about to fail or succeed (1 for the first).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The wait before the next try, without moving on.
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// The wait before the next try; the one after is twice as long (capped).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// After a success: the next failure waits `initial` again.
    pub fn reset(&mut self) {
        self.next = self.initial.min(self.max);
        self.attempt = 1;
    }

    /// Sleeps for [`next_delay`](Self::next_delay) (async).
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_starts_over_after_reset() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(250), ms(1500));
        let waits: Vec<_> = (0..5).map(|_| b.next_delay()).collect();
        assert_eq!(waits, [ms(250), ms(500), ms(1000), ms(1500), ms(1500)]);
        assert_eq!(b.attempt(), 6);
        b.reset();
        assert_eq!((b.attempt(), b.peek()), (1, ms(250)));
    }

    #[test]
    fn an_initial_wait_above_the_cap_is_capped() {
        let mut b = Backoff::new(Duration::from_secs(9), Duration::from_secs(2));
        assert_eq!(b.next_delay(), Duration::from_secs(2));
    }
}
