//! MPS `AddMedia` sink (to be written).
