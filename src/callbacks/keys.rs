//! Public keys and certificates for notification signatures (to be written).
