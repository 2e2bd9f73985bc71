//! `guard`: a `reply.guard` hook that blocks any reply mentioning one of the words in its
//! config (`blocked`, default `["password"]`), and says which word.

use airlock_abi::{
    ActionError, ConfigChange, ConfigReport, Context, HookReply, Hooks, InitError, Plugin,
};
use serde::Deserialize;
use std::sync::RwLock;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_blocked")]
    blocked: Vec<String>,
}

fn default_blocked() -> Vec<String> {
    vec!["password".to_owned()]
}

/// The plugin.
pub struct Guard {
    blocked: RwLock<Vec<String>>,
}

impl Plugin for Guard {
    fn create(ctx: Context) -> Result<Self, InitError> {
        let config: Config = ctx.config()?;
        Ok(Self {
            blocked: RwLock::new(config.blocked),
        })
    }

    fn validate_config(config: &serde_json::Value) -> ConfigReport {
        let mut report = ConfigReport::default();
        if let Err(e) = serde_json::from_value::<Config>(config.clone()) {
            report.errors.push(e.to_string());
        }
        report
    }

    fn config_changed(&self, config: &serde_json::Value) -> ConfigChange {
        match (
            serde_json::from_value::<Config>(config.clone()),
            self.blocked.write(),
        ) {
            (Ok(c), Ok(mut blocked)) => {
                *blocked = c.blocked;
                ConfigChange::Applied
            }
            _ => ConfigChange::Restart,
        }
    }

    fn hooks(hooks: &mut Hooks<Self>) {
        hooks.add("reply.guard", |this: &Self, reply: String| {
            let blocked = this
                .blocked
                .read()
                .map_err(|_| ActionError::new("poisoned"))?;
            let lower = reply.to_lowercase();
            Ok::<_, ActionError>(
                match blocked.iter().find(|w| lower.contains(&w.to_lowercase())) {
                    Some(word) => HookReply::Block(format!("replies may not mention {word:?}")),
                    None => HookReply::Continue(()),
                },
            )
        });
    }
}

airlock_abi::export_plugin!(Guard);
