//! Sans-IO HTTP/1.1: request/response head parsing, body framing and header rewriting.
