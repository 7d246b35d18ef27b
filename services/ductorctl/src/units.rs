//! The systemd user units: rendering the templates from `deploy/systemd/`
//! (embedded at build time) with the real binary directory and home, and the
//! few `systemctl --user` calls `ductorctl` makes.
//!
//! The committed units are valid as they are (binaries in `~/.local/bin`,
//! home `~/.ductor`, sockets in `$XDG_RUNTIME_DIR/ductor`); rendering only
//! replaces those three defaults.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use ductor_daemon::{DuctorHome, ServiceName};

use crate::instance::Instance;
use crate::supervisor;

/// A unit file: its name and its template text.
#[derive(Debug, Clone, Copy)]
pub struct Unit {
    /// File name, e.g. `ductor-core.service`.
    pub name: &'static str,
    /// The committed text.
    pub template: &'static str,
    /// The service it runs (`None` for the target).
    pub service: Option<ServiceName>,
    /// A template (`ductor-telegram@.service`): one instance per sub-agent,
    /// `ductor-telegram@<name>.service`, with `DUCTOR_AGENT=%i`.
    pub per_agent: bool,
}

/// Every unit, the sub-agent templates after main's, the target last.
pub const UNITS: [Unit; 7] = [
    Unit {
        name: "ductor-runner.service",
        template: include_str!("../../../deploy/systemd/ductor-runner.service"),
        service: Some(ServiceName::Runner),
        per_agent: false,
    },
    Unit {
        name: "ductor-core.service",
        template: include_str!("../../../deploy/systemd/ductor-core.service"),
        service: Some(ServiceName::Core),
        per_agent: false,
    },
    Unit {
        name: "ductor-gateway-telegram.service",
        template: include_str!("../../../deploy/systemd/ductor-gateway-telegram.service"),
        service: Some(ServiceName::Telegram),
        per_agent: false,
    },
    Unit {
        name: "ductor-gateway-matrix.service",
        template: include_str!("../../../deploy/systemd/ductor-gateway-matrix.service"),
        service: Some(ServiceName::Matrix),
        per_agent: false,
    },
    Unit {
        name: "ductor-telegram@.service",
        template: include_str!("../../../deploy/systemd/ductor-telegram@.service"),
        service: Some(ServiceName::Telegram),
        per_agent: true,
    },
    Unit {
        name: "ductor-matrix@.service",
        template: include_str!("../../../deploy/systemd/ductor-matrix@.service"),
        service: Some(ServiceName::Matrix),
        per_agent: true,
    },
    Unit {
        name: "ductor.target",
        template: include_str!("../../../deploy/systemd/ductor.target"),
        service: None,
        per_agent: false,
    },
];

/// The unit name of a service of the main agent.
pub fn unit_name(service: ServiceName) -> &'static str {
    UNITS
        .iter()
        .find(|u| u.service == Some(service) && !u.per_agent)
        .map(|u| u.name)
        .expect("every service has a unit in UNITS")
}

/// The unit of an instance: main's `ductor-gateway-telegram.service`, a
/// sub-agent's `ductor-telegram@researcher.service` (of the template).
pub fn instance_unit(instance: &Instance) -> String {
    if !instance.is_sub_agent() {
        return unit_name(instance.service).to_owned();
    }
    format!("ductor-{}@{}.service", instance.service.as_str(), instance.agent)
}

/// What rendering fills in.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// Directory holding the ductor binaries.
    pub bin_dir: PathBuf,
    /// The ductor home the units serve.
    pub home: DuctorHome,
    /// `$XDG_RUNTIME_DIR` of the installing user, if set.
    pub xdg_runtime_dir: Option<PathBuf>,
}

/// A path systemd cannot take literally.
#[derive(Debug, thiserror::Error)]
#[error("{0} contains whitespace or a quote; systemd units need a plain path")]
pub struct UnrenderablePath(String);

fn unit_path(path: &Path) -> Result<String, UnrenderablePath> {
    let text = path.display().to_string();
    if text.chars().any(|c| c.is_whitespace() || c == '"' || c == '\'' || c == '\\') {
        return Err(UnrenderablePath(text));
    }
    // `%` starts a specifier in unit files.
    Ok(text.replace('%', "%%"))
}

/// Renders one template.
pub fn render(template: &str, options: &RenderOptions) -> Result<String, UnrenderablePath> {
    let bin_dir = unit_path(&options.bin_dir)?;
    let root = unit_path(options.home.root())?;
    let run_dir = options.home.run_dir();
    let default_run = options.xdg_runtime_dir.as_ref().map(|x| x.join("ductor"));
    let run_dir_text = if default_run.as_deref() == Some(run_dir) {
        "%t/ductor".to_owned()
    } else {
        unit_path(run_dir)?
    };
    let extra_writable = if run_dir_text != "%t/ductor" && !run_dir.starts_with(options.home.root())
    {
        format!(" {run_dir_text}")
    } else {
        String::new()
    };
    let mut out = String::with_capacity(template.len() + 128);
    for line in template.lines() {
        let line = if let Some(rest) = line.strip_prefix("ExecStart=%h/.local/bin/") {
            format!("ExecStart={bin_dir}/{rest}")
        } else if line == "Environment=DUCTOR_RUN_DIR=%t/ductor" {
            format!("Environment=DUCTOR_RUN_DIR={run_dir_text}")
        } else if let Some(rest) = line.strip_prefix("ReadWritePaths=%h/.ductor") {
            format!("ReadWritePaths={root}{extra_writable}{rest}")
        } else {
            line.replace("%h/.ductor", &root)
        };
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

/// Renders every unit into `dir`; returns the written paths.
pub fn write_units(dir: &Path, options: &RenderOptions) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let mut written = Vec::new();
    for unit in UNITS {
        let path = dir.join(unit.name);
        let text = render(unit.template, options)?;
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// `$XDG_CONFIG_HOME/systemd/user` (default `~/.config/systemd/user`).
pub fn user_unit_dir() -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(config.join("systemd/user"))
}

/// Whether installed units serve `home` (their `DUCTOR_HOME` is its root).
pub fn installed_for(home: &DuctorHome) -> bool {
    let Some(dir) = user_unit_dir() else { return false };
    let Ok(text) = std::fs::read_to_string(dir.join(unit_name(ServiceName::Core))) else {
        return false;
    };
    let root = home.root().display().to_string();
    text.lines().any(|line| {
        line.strip_prefix("Environment=DUCTOR_HOME=").is_some_and(|value| {
            value == root
                || (value == "%h/.ductor"
                    && std::env::var_os("HOME")
                        .is_some_and(|h| PathBuf::from(h).join(".ductor") == home.root()))
        })
    })
}

/// Whether `systemctl` is on PATH.
pub fn systemctl_available() -> bool {
    find_on_path("systemctl").is_some()
}

/// Finds an executable on PATH (or takes an absolute/relative path as is).
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        let path = PathBuf::from(name);
        return is_exec(&path).then_some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| is_exec(p))
}

/// Runs `systemctl --user ARGS`; the error carries its stderr.
pub async fn systemctl(args: &[&str]) -> anyhow::Result<String> {
    let output = supervisor::command("systemctl")
        .arg("--user")
        .args(args)
        .output()
        .await
        .context("run systemctl")?;
    if !output.status.success() {
        anyhow::bail!(
            "systemctl --user {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Whether `ductor.target` is active in the user manager.
pub async fn target_active() -> bool {
    systemctl_available() && systemctl(&["is-active", "--quiet", "ductor.target"]).await.is_ok()
}

/// What systemd says about a service's unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitInfo {
    /// `NRestarts`: automatic restarts since the unit was started.
    pub restarts: u32,
    /// `MainPID` (0 when not running).
    pub main_pid: u32,
    /// `ActiveState`, e.g. `active`, `activating`, `failed`, `inactive`.
    pub active_state: String,
    /// `SubState`, e.g. `running`, `auto-restart`, `start`.
    pub sub_state: String,
}

/// Parses `systemctl show -p ...` output.
pub fn parse_show(text: &str) -> UnitInfo {
    let mut info = UnitInfo::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else { continue };
        let value = value.trim();
        match key {
            "NRestarts" => info.restarts = value.parse().unwrap_or(0),
            "MainPID" => info.main_pid = value.parse().unwrap_or(0),
            "ActiveState" => info.active_state = value.to_owned(),
            "SubState" => info.sub_state = value.to_owned(),
            _ => {}
        }
    }
    info
}

/// The unit of `instance` as systemd sees it, when it knows it.
pub async fn unit_info(instance: &Instance) -> Option<UnitInfo> {
    if !systemctl_available() {
        return None;
    }
    let text = systemctl(&[
        "show",
        "-p",
        "NRestarts",
        "-p",
        "MainPID",
        "-p",
        "ActiveState",
        "-p",
        "SubState",
        &instance_unit(instance),
    ])
    .await
    .ok()?;
    let info = parse_show(&text);
    (!info.active_state.is_empty()).then_some(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(root: &str, run: Option<&str>) -> RenderOptions {
        let xdg = PathBuf::from("/run/user/1000");
        let home = DuctorHome::resolve(
            Some(PathBuf::from(root)),
            run.map(PathBuf::from),
            Some(xdg.clone()),
            Some(PathBuf::from("/home/u")),
        );
        RenderOptions {
            bin_dir: PathBuf::from("/opt/ductor/bin"),
            home,
            xdg_runtime_dir: Some(xdg),
        }
    }

    #[test]
    fn default_home_keeps_runtime_dir_specifier() {
        let text = render(UNITS[0].template, &options("/home/u/.ductor", None)).unwrap();
        assert!(text.contains("ExecStart=/opt/ductor/bin/ductor-runner\n"), "{text}");
        assert!(text.contains("Environment=DUCTOR_HOME=/home/u/.ductor\n"));
        assert!(text.contains("Environment=DUCTOR_RUN_DIR=%t/ductor\n"));
        assert!(text.contains("ReadWritePaths=/home/u/.ductor -%h/.claude"));
        assert!(!text.contains(".local/bin"));
    }

    #[test]
    fn custom_home_gets_its_own_run_dir_and_writable_paths() {
        let text = render(UNITS[1].template, &options("/srv/d", Some("/srv/run"))).unwrap();
        assert!(text.contains("Environment=DUCTOR_HOME=/srv/d\n"), "{text}");
        assert!(text.contains("Environment=DUCTOR_RUN_DIR=/srv/run\n"));
        assert!(text.contains("ReadWritePaths=/srv/d /srv/run\n"));
        let inside = render(UNITS[1].template, &options("/srv/d", None)).unwrap();
        assert!(inside.contains("Environment=DUCTOR_RUN_DIR=/srv/d/run\n"), "{inside}");
        assert!(inside.contains("ReadWritePaths=/srv/d\n"));
    }

    #[test]
    fn every_template_has_the_required_directives() {
        for unit in UNITS.iter().filter(|u| u.service.is_some()) {
            for needle in [
                "Type=notify",
                "Restart=on-failure",
                "RestartForceExitStatus=42",
                "NoNewPrivileges=yes",
                "ProtectSystem=strict",
                "ReadWritePaths=%h/.ductor",
                "PrivateTmp=yes",
                "PartOf=ductor.target",
                "WantedBy=ductor.target",
            ] {
                assert!(unit.template.contains(needle), "{} lacks {needle}", unit.name);
            }
        }
        let core = UNITS[1].template;
        assert!(core.contains("Requires=ductor-runner.service"));
        assert!(core.contains("After=ductor-runner.service"));
        for gateway in &UNITS[2..6] {
            assert!(gateway.template.contains("After=ductor-core.service"), "{}", gateway.name);
        }
        for template in UNITS.iter().filter(|u| u.per_agent) {
            assert!(template.name.ends_with("@.service"), "{}", template.name);
            assert!(
                template.template.contains("Environment=DUCTOR_AGENT=%i\n"),
                "{}",
                template.name
            );
        }
    }

    #[test]
    fn instances_name_their_units() {
        let researcher = Instance::of(ServiceName::Telegram, "researcher");
        assert_eq!(instance_unit(&researcher), "ductor-telegram@researcher.service");
        let main = Instance::main(ServiceName::Matrix);
        assert_eq!(instance_unit(&main), "ductor-gateway-matrix.service");
        assert_eq!(unit_name(ServiceName::Telegram), "ductor-gateway-telegram.service");
    }

    #[test]
    fn systemctl_show_output_is_parsed() {
        let info = parse_show("NRestarts=3\nMainPID=412\nActiveState=active\nSubState=running\n");
        assert_eq!(info.restarts, 3);
        assert_eq!(info.main_pid, 412);
        assert_eq!((info.active_state.as_str(), info.sub_state.as_str()), ("active", "running"));
    }

    #[test]
    fn paths_with_spaces_are_refused() {
        let mut options = options("/home/u/.ductor", None);
        options.bin_dir = PathBuf::from("/opt/my bin");
        assert!(render(UNITS[0].template, &options).is_err());
    }

    #[test]
    fn written_units_land_in_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let written = write_units(tmp.path(), &options("/home/u/.ductor", None)).unwrap();
        assert_eq!(written.len(), UNITS.len());
        assert!(tmp.path().join("ductor.target").is_file());
    }
}
