//! Small building blocks shared by the layers above: value parsers for the command line and
//! single-threaded synchronisation for the tasks of one worker.

pub mod baton;
pub mod cpus;
pub mod duration;
#[cfg(test)]
pub mod future_size;
pub mod latch;
pub mod poll;
pub mod size;
