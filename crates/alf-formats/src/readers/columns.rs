//! The column table of a positional or header-driven format: one declaration gives the
//! enum of the columns a parser maps and the table from the names in the log (a
//! `#Fields` line, a flow-log header, JSON keys) to those columns.

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

pub(crate) use column_table;
