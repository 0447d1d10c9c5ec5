//! What the consumer reports about itself, read by `/ready`: whether it is
//! consuming, and counters of what it did since start.

use crate::metrics::Histograms;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct WorkerStatus {
    consuming: AtomicBool,
    stored: AtomicU64,
    duplicates: AtomicU64,
    dead_lettered: AtomicU64,
    database_retries: AtomicU64,
    reconnects: AtomicU64,
    histograms: Histograms,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Counters {
    pub stored: u64,
    pub duplicates_skipped: u64,
    pub dead_lettered: u64,
    pub database_retries: u64,
    pub rabbitmq_reconnects: u64,
}

impl WorkerStatus {
    pub fn set_consuming(&self, on: bool) {
        self.consuming.store(on, Ordering::SeqCst);
    }
    pub fn is_consuming(&self) -> bool {
        self.consuming.load(Ordering::SeqCst)
    }
    pub fn add_stored(&self, n: u64) {
        self.stored.fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_duplicates(&self, n: u64) {
        self.duplicates.fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_dead_lettered(&self, n: u64) {
        self.dead_lettered.fetch_add(n, Ordering::Relaxed);
    }
    pub fn add_database_retry(&self) {
        self.database_retries.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add_reconnect(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    pub fn histograms(&self) -> &Histograms {
        &self.histograms
    }

    pub fn counters(&self) -> Counters {
        Counters {
            stored: self.stored.load(Ordering::Relaxed),
            duplicates_skipped: self.duplicates.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            database_retries: self.database_retries.load(Ordering::Relaxed),
            rabbitmq_reconnects: self.reconnects.load(Ordering::Relaxed),
        }
    }
}
