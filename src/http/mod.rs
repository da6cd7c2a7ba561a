//! Sans-IO HTTP/1.1 for http mode: request and response heads parsed into byte ranges and held
//! to RFC 9112 (so tern and its backends never disagree about where a message ends), streaming
//! body framing, and the rewriting of heads on their way through. No sockets, no TLS: the
//! proxy's I/O loop feeds bytes in and acts on what comes out.

pub mod body;
pub mod fields;
pub mod forward;
pub mod fuzzing;
pub mod request;
pub mod response;

pub use body::{BodyScanner, FramingError};
pub use fields::{Framing, HeadError};
pub use forward::ForwardPolicy;
pub use request::{Limits, Method, RequestHead};
pub use response::ResponseHead;
