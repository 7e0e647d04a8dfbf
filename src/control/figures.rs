//! Counters that live outside the shards (the control socket's, the
//! allowlist's): a struct of atomics and its [`Figure`] table, made from one
//! list by [`atomic_figures!`], in the manner of [`crate::metrics`]'
//! `figures!`. Each counter is written once (its doc line is its help text)
//! and from that one entry comes the field, its JSON key, its Prometheus
//! name and its label in the `stats` text.
//!
//! [`Figure`]: crate::metrics::Figure

/// Builds `pub struct $name { pub field: AtomicU64, ... }` (with `Default`)
/// and `pub static $table: &[Figure<$name>]` from one list. Each entry is
/// its doc lines (the help text, joined), then `field: Kind, "json.key", "prom_name"
/// (or `-` for none), "stats label" (or `-` for none);`. Every figure of one
/// table stands in the table's one `stats` line, `Line::$line`.
macro_rules! atomic_figures {
    (
        $(#[$smeta:meta])*
        pub struct $name:ident;
        $(#[$tmeta:meta])*
        pub static $table:ident on $line:ident;
        $(
            $(#[doc = $doc:literal])+
            $field:ident: $kind:ident, $json:literal, $prom:tt, $label:tt;
        )*
    ) => {
        $(#[$smeta])*
        #[derive(Debug, Default)]
        pub struct $name {
            $($(#[doc = $doc])+ pub $field: ::std::sync::atomic::AtomicU64,)*
        }

        $(#[$tmeta])*
        pub static $table: &[$crate::metrics::Figure<$name>] = &[$(
            $crate::metrics::Figure {
                key: $json,
                prom: atomic_figures!(@prom $prom),
                kind: $crate::metrics::Kind::$kind,
                help: concat!($($doc),+),
                text: atomic_figures!(@text $line $label),
                get: |s: &$name| s.$field.load(::std::sync::atomic::Ordering::Relaxed),
            },
        )*];
    };
    (@prom -) => { None };
    (@prom $p:literal) => { Some($p) };
    (@text $line:ident -) => { &[] };
    (@text $line:ident $label:literal) => { &[($crate::metrics::Line::$line, $label)] };
}

pub(crate) use atomic_figures;

#[cfg(test)]
pub(crate) mod tests {
    use crate::metrics::{Figure, Kind};

    /// What `metrics::tests` checks for the shards' table: unique keys and
    /// names, help text, counters (and only they) ending in `_total`.
    pub(crate) fn check_table<T>(figures: &[Figure<T>]) {
        let mut keys = std::collections::HashSet::new();
        let mut proms = std::collections::HashSet::new();
        for f in figures {
            assert!(keys.insert(f.key), "key {} twice", f.key);
            assert!(!f.help.trim().is_empty(), "{} has no help", f.key);
            if let Some(p) = f.prom {
                assert!(proms.insert(p), "prometheus name {p} twice");
                assert_eq!(p.ends_with("_total"), f.kind == Kind::Counter, "{p}");
                assert!(
                    crate::metrics::FIGURES.iter().all(|g| g.prom != Some(p)),
                    "{p} is a shard figure's name too"
                );
            }
        }
    }
}
