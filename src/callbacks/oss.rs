//! OSS upload callback signature (to be written).
