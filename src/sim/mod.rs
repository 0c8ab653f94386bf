//! Simulated UPS (being written).
