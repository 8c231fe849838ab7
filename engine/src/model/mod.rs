//! Models. Each `forward` reads top-down like the architecture diagram.

pub mod bert;
pub(crate) mod weights;
