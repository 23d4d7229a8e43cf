#![allow(unreachable_pub, dead_code)]
//! Integration tests: the real server on a random port, real clients over
//! TCP, both codecs.

mod support;

mod lifecycle;
