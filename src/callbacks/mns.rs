//! MNS push signature (to be written).
