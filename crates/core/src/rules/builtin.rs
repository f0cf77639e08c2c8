//! The default rulebook, compiled into the binary: `callwatch` runs from
//! any directory with no rule file. A configured or flagged file replaces
//! it.

use super::config::Rulebook;

/// `rules/default.toml` as it was when the binary was built.
pub const TEXT: &str = include_str!("../../../../rules/default.toml");

/// What errors and `GetRules` call the built-in book.
pub const NAME: &str = "built-in rules/default.toml";

/// The built-in book, parsed.
pub fn rulebook() -> Rulebook {
    // A constant, parsed by the test below on every build.
    Rulebook::parse(TEXT, NAME).expect("the built-in rulebook is valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_rulebook_is_the_repository_file_and_valid() {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/default.toml");
        let on_disk = Rulebook::load(&file).unwrap();
        let built_in = rulebook();
        let ids = |b: &Rulebook| b.rules.iter().map(|r| r.id.to_string()).collect::<Vec<_>>();
        assert_eq!(ids(&built_in), ids(&on_disk));
        assert!(ids(&built_in).iter().any(|id| id == "hold.check_in"));
    }
}
