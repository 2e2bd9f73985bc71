//! `hello`: the smallest useful plugin. One action greets, reading its greeting from the
//! operator's config; another shows that config; a third returns a domain error.

use std::sync::Mutex;

use airlock_abi::{
    ActionError, Actions, ConfigChange, ConfigReport, Context, Health, InitError, Plugin,
};
use serde::Deserialize;

/// The config an operator can set under `[plugins.hello.config]`. `plugin.json`'s `config_schema`
/// says the same, so the host refuses a config that does not fit before this plugin sees it, and
/// the web console makes its config form from it; a blank greeting is this plugin's own refusal.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HelloConfig {
    #[serde(default = "default_greeting")]
    greeting: String,
}

fn default_greeting() -> String {
    "Hello".to_owned()
}

/// The input of `greet`.
#[derive(Debug, Deserialize)]
struct GreetInput {
    #[serde(default)]
    name: Option<String>,
}

/// The plugin.
pub struct Hello {
    ctx: Context,
    greeting: Mutex<String>,
}

impl Plugin for Hello {
    fn create(ctx: Context) -> Result<Self, InitError> {
        let config: HelloConfig = ctx.config()?;
        ctx.info(&format!("ready to greet with {:?}", config.greeting));
        Ok(Self {
            ctx,
            greeting: Mutex::new(config.greeting),
        })
    }

    fn actions(actions: &mut Actions<Self>) {
        actions
            .add("greet", |this: &Self, input: Option<GreetInput>| {
                let name = input
                    .and_then(|i| i.name)
                    .unwrap_or_else(|| "world".to_owned());
                this.ctx.debug(&format!("greeting {name}"));
                let greeting = this
                    .greeting
                    .lock()
                    .map_err(|_| ActionError::new("poisoned"))?;
                Ok::<_, ActionError>(format!("{greeting}, {name}!"))
            })
            .add("config", |this: &Self, (): ()| {
                this.ctx
                    .config::<serde_json::Value>()
                    .map_err(ActionError::from)
            })
            .add("fail", |_: &Self, (): ()| {
                Err::<(), _>(ActionError::new("hello refuses, as asked"))
            });
    }

    fn health(&self) -> Health {
        Health::Ok
    }

    fn validate_config(config: &serde_json::Value) -> ConfigReport {
        let mut report = ConfigReport::default();
        match serde_json::from_value::<HelloConfig>(config.clone()) {
            Err(e) => report.errors.push(e.to_string()),
            Ok(c) if c.greeting.trim().is_empty() => {
                report.errors.push("greeting must not be blank".to_owned())
            }
            Ok(_) => {}
        }
        report
    }

    /// A new greeting is taken live: no restart needed.
    fn config_changed(&self, config: &serde_json::Value) -> ConfigChange {
        match (
            serde_json::from_value::<HelloConfig>(config.clone()),
            self.greeting.lock(),
        ) {
            (Ok(c), Ok(mut greeting)) => {
                *greeting = c.greeting;
                ConfigChange::Applied
            }
            _ => ConfigChange::Restart,
        }
    }

    fn teardown(self) {
        self.ctx.info("goodbye");
    }
}

airlock_abi::export_plugin!(Hello);

#[cfg(test)]
mod tests {
    use airlock::testing::TestHost;
    use airlock::Reply;
    use serde_json::json;

    use super::Hello;

    #[test]
    fn greets_with_the_configured_greeting_and_takes_a_new_one_live() {
        let hello = TestHost::new()
            .config(json!({"greeting": "Hi"}))
            .create::<Hello>()
            .expect("created");
        assert_eq!(
            hello.call::<_, String>("greet", &json!({"name": "Ada"})),
            Ok(Reply::Ok("Hi, Ada!".to_owned()))
        );
        assert_eq!(
            hello.call::<_, String>("fail", &()),
            Ok(Reply::Error("hello refuses, as asked".to_owned()))
        );
        let applied = hello
            .set_config(json!({"greeting": "Yo"}))
            .expect("a valid config");
        assert!(applied.live, "hello takes a new greeting live");
        assert_eq!(
            hello.call::<_, String>("greet", &()),
            Ok(Reply::Ok("Yo, world!".to_owned()))
        );
        assert!(hello.set_config(json!({"greeting": " "})).is_err());
        hello.teardown().expect("a clean teardown");
    }
}
