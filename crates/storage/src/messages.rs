//! The language of the server's messages. diesel-async hands the store a
//! SQLSTATE for a few typed kinds only, so `classify` tells deadlocks,
//! lock and statement timeouts and terminated sessions apart by the
//! server's English message texts: on a server that writes them in
//! another language, those faults would be storage failures (500)
//! instead of retries. Every new session is checked, and made to speak
//! English where its role may say so (`lc_messages` is a superuser's
//! setting); else the store refuses the session, naming the fix.

use diesel::dsl::sql;
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

/// Checks `conn`'s `lc_messages`; sets it to `C` when it is another
/// language and `may_set` (a session of its own: through a transaction
/// pooler a `SET` would not stay with the session). `Err` says why the
/// session cannot serve, and how to fix that.
pub(crate) async fn ensure_english(
    conn: &mut AsyncPgConnection,
    may_set: bool,
) -> Result<(), String> {
    let setting: String = diesel::select(sql::<Text>("current_setting('lc_messages')"))
        .get_result(conn)
        .await
        .map_err(|e| format!("reading lc_messages: {e}"))?;
    if is_english(&setting) {
        return Ok(());
    }
    if may_set && conn.batch_execute("SET lc_messages TO 'C'").await.is_ok() {
        return Ok(());
    }
    Err(format!(
        "the server writes its messages in {setting:?} (lc_messages), and this role may not \
         change that: the store tells deadlocks, lock and statement timeouts and terminated \
         sessions apart by their English text, so they would fail requests instead of being \
         retried. Have a superuser run `ALTER ROLE <this role> SET lc_messages = 'C'` (or \
         set it for the database, or in postgresql.conf), then reconnect"
    ))
}

/// Whether a `lc_messages` value makes the server write English: `C`,
/// `POSIX`, any `en_*` locale, or unset (the server's own default, C).
fn is_english(setting: &str) -> bool {
    let lower = setting.trim().to_ascii_lowercase();
    lower.is_empty()
        || lower == "c"
        || lower.starts_with("c.")
        || lower == "posix"
        || lower.starts_with("en")
}

#[cfg(test)]
mod tests {
    use super::is_english;

    #[test]
    fn c_posix_and_english_locales_are_english_others_are_not() {
        for english in ["", "C", "C.UTF-8", "POSIX", "en_US.UTF-8", "en_GB"] {
            assert!(is_english(english), "{english}");
        }
        for other in ["de_DE.UTF-8", "fr_FR", "ja_JP.UTF-8"] {
            assert!(!is_english(other), "{other}");
        }
    }
}
