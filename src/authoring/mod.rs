//! Writing migrations (pure): `new`'s templates and next version, `init`'s
//! commented configuration ([`scaffold`]), and `resolve`'s renumbering
//! ([`renumber`]). The command line writes the files.

pub mod renumber;
pub mod scaffold;
