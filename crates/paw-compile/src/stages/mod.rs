//! The compile stages, in pipeline order. Each takes what earlier stages made and returns its
//! output with a typed report; [`crate::pipeline`] calls them in order.

pub(crate) mod data;
pub(crate) mod pack;
pub(crate) mod pseudo_program;
pub(crate) mod train;
pub(crate) mod validate;
