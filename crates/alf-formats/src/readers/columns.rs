//! The column table of a positional or header-driven format: one declaration gives the
//! enum of the columns a parser maps and the table from the names in the log (a
//! `#Fields` line, a flow-log header, JSON keys) to those columns; the positions of a
//! fixed space-separated layout are declared the same way, as one ordered list.

/// Declares `enum Col` (one variant per mapped column, `#[repr(usize)]` so a column can
/// index a per-record array) and `const KNOWN` / `const NKNOWN` (the table and its
/// length). The doc comment given first documents `Col`.
///
/// * `column_table! { /// doc  Date = "date", ... }`: `KNOWN` holds `(log name, Col)`.
/// * `column_table! { /// doc  under "aws.vpcflow."; Version = "version" => "version", ... }`:
///   `KNOWN` holds `(log name, prefix + key, Col)`, the path an unmapped value is kept
///   under, built at compile time so keeping a field costs no allocation per record.
macro_rules! column_table {
    ($(#[$doc:meta])* $($variant:ident = $name:literal),* $(,)?) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(usize)]
        enum Col { $($variant),* }
        /// (name in the log, column).
        const KNOWN: &[(&str, Col)] = &[$(($name, Col::$variant)),*];
        const NKNOWN: usize = KNOWN.len();
    };
    ($(#[$doc:meta])* under $prefix:literal; $($variant:ident = $name:literal => $key:literal),* $(,)?) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(usize)]
        enum Col { $($variant),* }
        /// (name in the log, path the value is kept under, column).
        const KNOWN: &[(&str, &'static str, Col)] =
            &[$(($name, concat!($prefix, $key), Col::$variant)),*];
        const NKNOWN: usize = KNOWN.len();
    };
}

/// Declares the field positions of a space-separated layout: `pub const NAME: usize`
/// for each name in order, numbered from `$first`, and `KNOWN`, one past the last. A
/// layout is its list of names: AWS appends fields, so the next index follows from the
/// order instead of being written (and kept right) by hand.
macro_rules! field_positions {
    ($first:literal => $head:ident $(, $name:ident)* $(,)?) => {
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        #[repr(usize)]
        enum Position { $head = $first, $($name,)* KNOWN }
        pub const $head: usize = Position::$head as usize;
        $(pub const $name: usize = Position::$name as usize;)*
        pub const KNOWN: usize = Position::KNOWN as usize;
    };
}

pub(crate) use {column_table, field_positions};
