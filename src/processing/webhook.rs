//! Signed webhook sink (to be written).
