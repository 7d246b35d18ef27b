//! Skill sync figures, printed (not asserted: the machine is shared):
//!
//! 1. one sync pass with nothing to do over 20 workspace skills (and 5
//!    operator skills, imported as managed copies) × 50 CLI homes;
//! 2. `homes::prepare` of an existing home (the path of every run), which
//!    skill sync must leave as it was: a new home is told apart by the
//!    `mkdirat` the walk always made, no extra call.
//!
//! Run: `cargo bench -p ductor-runner --bench skill_sync`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ductor_daemon::DuctorHome;
use ductor_daemon::config::{ProvidersConfig, SkillsConfig};
use ductor_runner::homes;
use ductor_runner::skills::Skills;
use ductor_runner::spec::Provider;

const SKILLS: usize = 20;
const OPERATOR_SKILLS: usize = 5;
const HOMES: usize = 50;
const ROUNDS: usize = 200;

fn skill(dir: &std::path::Path, i: usize) {
    std::fs::create_dir_all(dir.join("scripts")).unwrap();
    std::fs::write(
        dir.join("SKILL.md"),
        format!("---\nname: s{i}\ndescription: d\n---\n{}", "x".repeat(2000)),
    )
    .unwrap();
    std::fs::write(dir.join("scripts/run.sh"), "echo hi\n").unwrap();
}

fn figures(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    format!("p50 {:?}, p99 {:?}, max {:?}", at(0.5), at(0.99), samples[samples.len() - 1])
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let home = DuctorHome::at(tmp.path().join("ductor"));
    let operator = tmp.path().join("op");
    for i in 0..SKILLS {
        skill(&home.workspace().join("skills").join(format!("s{i}")), i);
    }
    for i in 0..OPERATOR_SKILLS {
        skill(&operator.join(".claude/skills").join(format!("op{i}")), i);
    }
    let env = BTreeMap::from([("HOME".to_owned(), operator.display().to_string())]);
    for i in 0..HOMES {
        homes::prepare(Provider::Claude, &home.provider_homes(), &format!("chat-{i}"), &env)
            .unwrap();
    }
    let skills =
        Skills::new(&SkillsConfig::default(), &home, &ProvidersConfig::default(), &env).unwrap();
    let first = skills.pass();
    assert!(first.applied >= OPERATOR_SKILLS + (SKILLS + OPERATOR_SKILLS) * HOMES, "{first:?}");
    let samples: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            let report = skills.pass();
            let took = start.elapsed();
            assert_eq!(report.applied, 0, "an unchanged pass changes nothing");
            took
        })
        .collect();
    println!(
        "skill sync pass, unchanged, {SKILLS}+{OPERATOR_SKILLS} skills x {HOMES} homes: {}",
        figures(samples)
    );

    let samples: Vec<Duration> = (0..ROUNDS * 5)
        .map(|_| {
            let start = Instant::now();
            let prepared =
                homes::prepare(Provider::Claude, &home.provider_homes(), "chat-0", &env).unwrap();
            let took = start.elapsed();
            assert!(!prepared.created);
            took
        })
        .collect();
    println!("homes::prepare of an existing home: {}", figures(samples));
}
