//! The password policy of the card, and the slow salted hashes passwords are kept as.
//!
//! Hashes are Argon2id PHC strings (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`): the costs
//! travel with each hash, so costs can be raised later and old hashes still verify.
//! Hashing runs one at a time ([`Hasher`]): a flood of logins waits in line instead of
//! each taking [`MEMORY_KIB`] of memory at once.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use parking_lot::Mutex;

/// The characters the policy counts as special, and the only ones allowed beside letters
/// and digits.
pub const SPECIALS: &str = "!%#@^*";
pub const MIN_LENGTH: usize = 12;
/// Longer passwords would only make hashing slower; no person types more.
pub const MAX_LENGTH: usize = 64;

/// Argon2id memory cost, KiB: the OWASP minimum for Argon2id. Memory is the cost an
/// attacker's GPU pays per guess; it is taken only while one hash runs.
pub const MEMORY_KIB: u32 = 19 * 1024;
/// Argon2id passes over that memory, twice the OWASP minimum: one hash takes about 30 ms on
/// the benchmark machine (BENCHMARKS.md), so a login stays within 0.3 s on a card CPU ten
/// times slower.
pub const PASSES: u32 = 4;

/// What is wrong with a proposed password: one sentence per rule it breaks, in the order
/// the rules are listed on the page. Empty when the password is acceptable.
pub fn check(password: &str) -> Vec<String> {
    let mut failed = Vec::new();
    let n = password.chars().count();
    if n < MIN_LENGTH {
        failed.push(format!(
            "At least {MIN_LENGTH} characters are needed (this one has {n})."
        ));
    }
    if n > MAX_LENGTH {
        failed.push(format!(
            "At most {MAX_LENGTH} characters are allowed (this one has {n})."
        ));
    }
    if !password.chars().any(|c| c.is_ascii_uppercase()) {
        failed.push("It needs an upper-case letter (A to Z).".into());
    }
    if !password.chars().any(|c| c.is_ascii_lowercase()) {
        failed.push("It needs a lower-case letter (a to z).".into());
    }
    if !password.chars().any(|c| c.is_ascii_digit()) {
        failed.push("It needs a digit (0 to 9).".into());
    }
    if !password.chars().any(|c| SPECIALS.contains(c)) {
        failed.push("It needs one of the special characters ! % # @ ^ *.".into());
    }
    let mut others: Vec<char> = password
        .chars()
        .filter(|c| !c.is_ascii_alphanumeric() && !SPECIALS.contains(*c))
        .collect();
    others.sort_unstable();
    others.dedup();
    if !others.is_empty() {
        let shown: Vec<String> = others
            .iter()
            .map(|c| match c {
                ' ' => "space".to_string(),
                c if c.is_control() => format!("U+{:04X}", *c as u32),
                c => format!("'{c}'"),
            })
            .collect();
        failed.push(format!(
            "Only letters, digits and ! % # @ ^ * are allowed, not {}.",
            shown.join(", ")
        ));
    }
    failed
}

/// Makes and checks hashes, one at a time.
pub struct Hasher {
    turn: Mutex<()>,
    /// A hash checked when the user name is unknown, so a wrong name costs the same time
    /// as a wrong password and names cannot be told apart by timing. Made at the first
    /// need, not at start.
    decoy: std::sync::OnceLock<String>,
}

impl Hasher {
    pub fn new() -> Hasher {
        Hasher {
            turn: Mutex::new(()),
            decoy: std::sync::OnceLock::new(),
        }
    }

    /// A new PHC string for `password` with a fresh random salt.
    pub fn hash(&self, password: &str) -> String {
        let _turn = self.turn.lock();
        hash_with(&argon2(), password)
    }

    /// Whether `password` matches `stored` (a PHC string); `None` checks the decoy, to
    /// spend the same time, and is always false.
    pub fn verify(&self, password: &str, stored: Option<&str>) -> bool {
        let (phc, real) = match stored {
            Some(s) => (s, true),
            None => (
                self.decoy
                    .get_or_init(|| self.hash("decoy password, never matches"))
                    .as_str(),
                false,
            ),
        };
        let _turn = self.turn.lock();
        let Ok(parsed) = PasswordHash::new(phc) else {
            log::error!("a stored password hash is not a PHC string; that account cannot log in");
            return false;
        };
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        ok && real
    }
}

impl Default for Hasher {
    fn default() -> Hasher {
        Hasher::new()
    }
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, PASSES, 1, None).expect("valid Argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_with(argon: &Argon2<'_>, password: &str) -> String {
    let salt = SaltString::encode_b64(&crate::accounts::random_bytes::<16>()).expect("16 bytes");
    argon
        .hash_password(password.as_bytes(), &salt)
        .expect("Argon2 hashing with valid parameters")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_broken_rule_has_its_own_sentence() {
        assert!(check("Abcdefgh123!").is_empty());
        assert!(check("Zz9*Zz9*Zz9*").is_empty());
        let short = check("Ab1!");
        assert_eq!(short.len(), 1);
        assert!(short[0].contains("12 characters") && short[0].contains("has 4"));
        assert_eq!(check("abcdefgh123!").len(), 1);
        assert!(check("abcdefgh123!")[0].contains("upper-case"));
        assert!(check("ABCDEFGH123!")[0].contains("lower-case"));
        assert!(check("Abcdefghijk!")[0].contains("digit"));
        assert!(check("Abcdefgh1234")[0].contains("special"));
        let other = check("Abcdefgh 12!$");
        assert_eq!(other.len(), 1);
        assert!(
            other[0].contains("space") && other[0].contains("'$'"),
            "{other:?}"
        );
        // Everything at once: each rule once.
        assert_eq!(check("").len(), 5);
        assert_eq!(check("é").len(), 6);
        assert!(check(&"Aa1!".repeat(20))[0].contains("At most"));
    }

    #[test]
    fn a_hash_verifies_only_its_password() {
        let h = Hasher::new();
        let phc = h.hash("Abcdefgh123!");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=4,p=1$"), "{phc}");
        assert!(h.verify("Abcdefgh123!", Some(&phc)));
        assert!(!h.verify("Abcdefgh123?", Some(&phc)));
        assert!(!h.verify("Abcdefgh123!", None));
        assert!(!h.verify("x", Some("not a hash")));
        assert_ne!(phc, h.hash("Abcdefgh123!"), "salted");
    }
}
