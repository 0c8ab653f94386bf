//! A running part follows its own settings: the one helper every part registers with
//! [`Live`] through (but Modbus TCP, which binds a new port before it can say yes).

use crate::live::Live;
use crate::settings::Settings;

/// On every change, `config_of` picks `part`'s settings out of the old and the new; when
/// they differ, `apply` gives it the new ones once the change is committed.
pub fn follow<P, C>(
    live: &Live,
    name: &'static str,
    part: P,
    config_of: impl Fn(&Settings) -> C + Send + Sync + 'static,
    apply: fn(&P, C),
) where
    P: Clone + Send + Sync + 'static,
    C: PartialEq + Send + 'static,
{
    live.register(
        name,
        Box::new(move |old, new| {
            let config = config_of(new);
            if config == config_of(old) {
                return Ok(None);
            }
            let part = part.clone();
            Ok(Some(Box::new(move || apply(&part, config))))
        }),
    );
}
