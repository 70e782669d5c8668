//! Not yet mapped: records are forwarded as plain lines until this module lands.

use std::io::BufRead;

use crate::driver::{EventSink, ObjectParse, ParseError};

pub fn parse(
    reader: &mut dyn BufRead,
    cx: &mut ObjectParse<'_>,
    sink: &mut dyn EventSink,
) -> Result<(), ParseError> {
    super::lines::parse(reader, cx, sink)
}
