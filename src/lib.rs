//! tower-sso: single sign-on for any hyper or axum service, as one `tower::Layer`.
#![deny(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod body;
pub mod cache;
pub mod claims;
pub mod clock;
pub mod config;
mod endpoints;
pub mod env;
pub mod error;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod extract;
mod future;
mod headers;
pub mod http;
pub mod identity;
mod layer;
pub mod oidc;
mod path;
pub mod policy;
pub mod provider;
mod random;
pub mod redirect;
mod runtime;
mod service;
pub mod session;
pub mod store;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod testing;

pub use crate::body::ResponseBody;
pub use crate::config::{ConfigError, ConfigErrors};
pub use crate::error::SsoError;
pub use crate::future::ResponseFuture;
pub use crate::identity::{Identity, IdentityData, SsoUser, UserRole};
pub use crate::layer::{SsoLayer, SsoLayerBuilder};
pub use crate::service::SsoService;
