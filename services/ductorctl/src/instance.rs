//! Supervised *instances*: a service serving one agent. The four services of
//! the main agent are `runner`, `core`, `telegram`, `matrix`; a sub-agent's
//! gateway is `telegram@<name>` / `matrix@<name>`, the same binary started
//! with `DUCTOR_AGENT=<name>` (`ductor_daemon::paths::instance_name`).
//!
//! Everything the launcher keys by name (state rows, pid files, logs, control
//! requests, systemd units) uses [`Instance::name`].

use std::path::PathBuf;

use ductor_daemon::config::{MAIN_AGENT, valid_agent_name};
use ductor_daemon::{Config, DuctorHome, ServiceName};

/// One service serving one agent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Instance {
    /// Which binary.
    pub service: ServiceName,
    /// Which agent (`main` for the main agent and for runner and core).
    pub agent: String,
}

impl Instance {
    /// A service of the main agent.
    pub fn main(service: ServiceName) -> Self {
        Self { service, agent: MAIN_AGENT.to_owned() }
    }

    /// `service` serving `agent` (only gateways are per agent).
    pub fn of(service: ServiceName, agent: &str) -> Self {
        Self { service, agent: agent.to_owned() }
    }

    /// Parses `telegram`, `core`, `telegram@researcher`.
    pub fn parse(text: &str) -> Option<Self> {
        match text.split_once('@') {
            None => ServiceName::parse(text).map(Self::main),
            Some((service, agent)) => {
                let service = ServiceName::parse(service)?;
                let gateway = matches!(service, ServiceName::Telegram | ServiceName::Matrix);
                (gateway && valid_agent_name(agent)).then(|| Self::of(service, agent))
            }
        }
    }

    /// The instance name: `telegram@researcher`, or the service's for main.
    pub fn name(&self) -> String {
        ductor_daemon::paths::instance_name(self.service, &self.agent)
    }

    /// Whether this serves a sub-agent (not main).
    pub fn is_sub_agent(&self) -> bool {
        self.agent != MAIN_AGENT
    }

    /// Whether this is a gateway (the only instances `agents start|stop` touch).
    pub fn is_gateway(&self) -> bool {
        matches!(self.service, ServiceName::Telegram | ServiceName::Matrix)
    }

    /// Its Health socket.
    pub fn socket(&self, home: &DuctorHome) -> PathBuf {
        home.socket_of(self.service, &self.agent)
    }

    /// Its launcher log, `logs/<instance>.log`.
    pub fn log_path(&self, home: &DuctorHome) -> PathBuf {
        home.logs_dir().join(format!("{}.log", self.name()))
    }

    /// Its pid file, `<run dir>/<instance>.pid` (written by the launcher).
    pub fn pid_file(&self, home: &DuctorHome) -> PathBuf {
        home.run_dir().join(format!("{}.pid", self.name()))
    }
}

impl std::fmt::Display for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// A clap value parser for an instance name on the command line.
pub fn parse_arg(text: &str) -> Result<Instance, String> {
    Instance::parse(text).ok_or_else(|| {
        format!(
            "{text:?} is not a service: runner, core, telegram, matrix, \
             or telegram@AGENT / matrix@AGENT"
        )
    })
}

/// The instances `up` starts, in order: runner, core, main's enabled
/// gateways, then each enabled sub-agent's gateways in `[[agents]]` order.
pub fn enabled(config: &Config) -> Vec<Instance> {
    let mut out = vec![Instance::main(ServiceName::Runner), Instance::main(ServiceName::Core)];
    if config.telegram.enabled {
        out.push(Instance::main(ServiceName::Telegram));
    }
    if config.matrix.enabled {
        out.push(Instance::main(ServiceName::Matrix));
    }
    out.extend(config.agents.iter().flat_map(agent_gateways));
    out
}

/// The enabled gateways of one `[[agents]]` entry.
pub fn agent_gateways(entry: &ductor_daemon::config::AgentEntry) -> Vec<Instance> {
    let mut out = Vec::new();
    if entry.telegram_enabled().is_some() {
        out.push(Instance::of(ServiceName::Telegram, &entry.name));
    }
    if entry.matrix_enabled().is_some() {
        out.push(Instance::of(ServiceName::Matrix, &entry.name));
    }
    out
}

/// Every gateway `agent` could have (configured or not): for `stop` and `down`.
pub fn possible_gateways(agent: &str) -> [Instance; 2] {
    [Instance::of(ServiceName::Telegram, agent), Instance::of(ServiceName::Matrix, agent)]
}

/// Every instance `down` and `status` should look for: main's four
/// services, each `[[agents]]` entry's possible gateways, and any sub-agent
/// instance that left a pid or socket file in the run directory (an agent
/// removed from the file while its gateway ran).
pub fn known(home: &DuctorHome, config: &Config) -> Vec<Instance> {
    let mut out: Vec<Instance> = ServiceName::ALL.into_iter().map(Instance::main).collect();
    for entry in &config.agents {
        out.extend(possible_gateways(&entry.name));
    }
    let files = std::fs::read_dir(home.run_dir()).into_iter().flatten().flatten();
    for file in files {
        let name = file.file_name();
        let Some(name) = name.to_str() else { continue };
        let stem = name.strip_suffix(".pid").or_else(|| name.strip_suffix(".sock"));
        if let Some(instance) = stem.filter(|s| s.contains('@')).and_then(Instance::parse)
            && !out.contains(&instance)
        {
            out.push(instance);
        }
    }
    out
}

/// The secret the launcher hands an instance in its environment: its own
/// agent's resolved Telegram token or Matrix password (`None` when it has
/// none, or for runner and core, which get no secret).
pub fn own_secret(config: &Config, instance: &Instance) -> Option<(&'static str, String)> {
    let entry = config.agent_entry(&instance.agent)?;
    let (name, value) = match instance.service {
        ServiceName::Telegram => {
            ("DUCTOR_TELEGRAM_TOKEN", entry.telegram.as_ref()?.token.expose().to_owned())
        }
        ServiceName::Matrix => {
            ("DUCTOR_MATRIX_PASSWORD", entry.matrix.as_ref()?.password.expose().to_owned())
        }
        ServiceName::Runner | ServiceName::Core => return None,
    };
    (!value.is_empty()).then_some((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_both_ways() {
        let researcher = Instance::parse("telegram@researcher").unwrap();
        assert_eq!(researcher, Instance::of(ServiceName::Telegram, "researcher"));
        assert_eq!(researcher.name(), "telegram@researcher");
        assert_eq!(Instance::parse("core").unwrap().name(), "core");
        assert!(Instance::parse("core@researcher").is_none(), "only gateways are per agent");
        assert!(Instance::parse("telegram@Bad!").is_none());
        assert!(Instance::parse("telegram@main").is_none(), "main's gateway is `telegram`");
        assert!(Instance::parse("mail").is_none());
    }

    #[test]
    fn enabled_instances_follow_the_config_in_order() {
        let text = "[telegram]\nenabled = true\ntoken = \"1:a\"\n\n\
                    [[agents]]\nname = \"researcher\"\n[agents.telegram]\ntoken = \"2:b\"\n\n\
                    [[agents]]\nname = \"idle\"\nenabled = false\n[agents.telegram]\ntoken = \"3:c\"\n";
        let config = Config::parse(text, "config.toml".as_ref(), &|_| None).unwrap();
        let names: Vec<String> = enabled(&config).iter().map(Instance::name).collect();
        assert_eq!(names, ["runner", "core", "telegram", "telegram@researcher"]);
        let researcher = Instance::of(ServiceName::Telegram, "researcher");
        assert_eq!(
            own_secret(&config, &researcher),
            Some(("DUCTOR_TELEGRAM_TOKEN", "2:b".to_owned()))
        );
        assert_eq!(own_secret(&config, &Instance::main(ServiceName::Telegram)), None);
    }
}
