//! The transfer engine: source listings ([`listing`]), the merge-join of a listing against the previous
//! snapshot ([`plan`]), moving one object either way ([`transfer`]) on one part engine ([`parts`]), and the
//! bucket configuration documents that travel beside the data ([`bucket_config`]).

pub mod bucket_config;
pub mod history;
pub mod listing;
pub mod parts;
pub mod plan;
pub mod stream;
pub mod transfer;
