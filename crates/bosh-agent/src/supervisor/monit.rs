//! A parser for the monit control files releases ship. Only `check process` services matter;
//! everything else monit understands (resource tests, alerts, other check types) is skipped.

use std::path::PathBuf;
use std::time::Duration;

/// Monit's default start/stop program timeout.
pub const DEFAULT_PROGRAM_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitService {
    pub name: String,
    pub pidfile: PathBuf,
    pub start_program: String,
    pub start_timeout: Duration,
    pub stop_program: Option<String>,
    pub stop_timeout: Duration,
    pub groups: Vec<String>,
    pub depends_on: Vec<String>,
}

impl MonitService {
    fn new(name: String) -> Self {
        MonitService {
            name,
            pidfile: PathBuf::new(),
            start_program: String::new(),
            start_timeout: DEFAULT_PROGRAM_TIMEOUT,
            stop_program: None,
            stop_timeout: DEFAULT_PROGRAM_TIMEOUT,
            groups: Vec::new(),
            depends_on: Vec::new(),
        }
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MonitParseError {
    #[error("unterminated quoted string on line {line}")]
    Unterminated { line: usize },
    #[error("check process {name}: {what}")]
    Incomplete { name: String, what: &'static str },
    #[error("expected {what} after '{after}'")]
    Expected { what: &'static str, after: String },
}

#[derive(Debug, Clone, PartialEq)]
struct Token {
    text: String,
    quoted: bool,
}

fn tokenize(input: &str) -> Result<Vec<Token>, MonitParseError> {
    let mut tokens = Vec::new();
    for (n, line) in input.lines().enumerate() {
        let mut chars = line.chars().peekable();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() || c == ',' {
                chars.next();
            } else if c == '#' {
                break;
            } else if c == '"' || c == '\'' {
                chars.next();
                let mut text = String::new();
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some(other) => text.push(other),
                        None => return Err(MonitParseError::Unterminated { line: n + 1 }),
                    }
                }
                tokens.push(Token { text, quoted: true });
            } else {
                let mut text = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || c == ',' || c == '"' {
                        break;
                    }
                    text.push(c);
                    chars.next();
                }
                tokens.push(Token {
                    text,
                    quoted: false,
                });
            }
        }
    }
    Ok(tokens)
}

fn is_kw(t: Option<&Token>, kw: &str) -> bool {
    t.is_some_and(|t| !t.quoted && t.text.eq_ignore_ascii_case(kw))
}

/// Monit actions that may follow `then` / `else`.
const ACTIONS: &[&str] = &[
    "alert",
    "restart",
    "start",
    "stop",
    "unmonitor",
    "monitor",
    "exec",
];

/// Parses a monit control file into its `check process` services.
pub fn parse(input: &str) -> Result<Vec<MonitService>, MonitParseError> {
    let tokens = tokenize(input)?;
    let mut services = Vec::new();
    let mut current: Option<MonitService> = None;
    let mut i = 0;
    let finish = |svc: MonitService, out: &mut Vec<MonitService>| -> Result<(), MonitParseError> {
        if svc.start_program.is_empty() {
            return Err(MonitParseError::Incomplete {
                name: svc.name,
                what: "no start program",
            });
        }
        if svc.pidfile.as_os_str().is_empty() {
            return Err(MonitParseError::Incomplete {
                name: svc.name,
                what: "no pidfile",
            });
        }
        out.push(svc);
        Ok(())
    };
    // The program a following `with timeout N seconds` applies to.
    let mut last_program_is_start = true;
    while i < tokens.len() {
        let t = &tokens[i];
        let word = if t.quoted {
            String::new()
        } else {
            t.text.to_ascii_lowercase()
        };
        match word.as_str() {
            "check" => {
                if let Some(svc) = current.take() {
                    finish(svc, &mut services)?;
                }
                let kind = tokens.get(i + 1).map(|t| t.text.to_ascii_lowercase());
                let name = tokens.get(i + 2).map(|t| t.text.clone());
                let (Some(kind), Some(name)) = (kind, name) else {
                    return Err(MonitParseError::Expected {
                        what: "a service type and name",
                        after: "check".into(),
                    });
                };
                if kind == "process" {
                    current = Some(MonitService::new(name));
                }
                i += 3;
            }
            "pidfile" => {
                let path = tokens.get(i + 1).ok_or(MonitParseError::Expected {
                    what: "a path",
                    after: "pidfile".into(),
                })?;
                if let Some(svc) = current.as_mut() {
                    svc.pidfile = PathBuf::from(&path.text);
                }
                i += 2;
            }
            "start" | "stop" if is_kw(tokens.get(i + 1), "program") => {
                let prog = tokens.get(i + 2).ok_or(MonitParseError::Expected {
                    what: "a program",
                    after: format!("{word} program"),
                })?;
                if let Some(svc) = current.as_mut() {
                    if word == "start" {
                        svc.start_program = prog.text.clone();
                    } else {
                        svc.stop_program = Some(prog.text.clone());
                    }
                }
                last_program_is_start = word == "start";
                i += 3;
            }
            "timeout" => {
                let secs = tokens.get(i + 1).and_then(|t| t.text.parse::<u64>().ok());
                if let (Some(secs), Some(svc)) = (secs, current.as_mut()) {
                    let d = Duration::from_secs(secs);
                    if last_program_is_start {
                        svc.start_timeout = d;
                    } else {
                        svc.stop_timeout = d;
                    }
                    i += 2;
                } else {
                    i += 1;
                }
            }
            "group" => {
                let g = tokens.get(i + 1).ok_or(MonitParseError::Expected {
                    what: "a group name",
                    after: "group".into(),
                })?;
                if let Some(svc) = current.as_mut() {
                    svc.groups.push(g.text.clone());
                }
                i += 2;
            }
            "depends" => {
                i += 1;
                if is_kw(tokens.get(i), "on") {
                    i += 1;
                }
                // Commas are separators, so the names are the following plain tokens up to
                // the next keyword this parser knows.
                while let Some(t) = tokens.get(i) {
                    let w = t.text.to_ascii_lowercase();
                    if t.quoted || KEYWORDS.contains(&w.as_str()) {
                        break;
                    }
                    if let Some(svc) = current.as_mut() {
                        svc.depends_on.push(t.text.clone());
                    }
                    i += 1;
                }
            }
            "if" => {
                // Skip the test up to `then <action>` (and `else [if ...] <action>`).
                i += 1;
                while i < tokens.len() && !is_kw(tokens.get(i), "then") {
                    i += 1;
                }
                i += 1;
                i = skip_action(&tokens, i);
                while is_kw(tokens.get(i), "else") {
                    i += 1;
                    if is_kw(tokens.get(i), "if") {
                        i += 1;
                        while is_kw(tokens.get(i), "succeeded")
                            || is_kw(tokens.get(i), "passed")
                            || is_kw(tokens.get(i), "then")
                        {
                            i += 1;
                        }
                    }
                    i = skip_action(&tokens, i);
                }
            }
            _ => i += 1,
        }
    }
    if let Some(svc) = current.take() {
        finish(svc, &mut services)?;
    }
    Ok(services)
}

const KEYWORDS: &[&str] = &[
    "check", "with", "pidfile", "start", "stop", "group", "depends", "if", "mode", "every",
    "alert", "restart", "noalert", "not", "and", "as", "uid", "gid",
];

fn skip_action(tokens: &[Token], mut i: usize) -> usize {
    if let Some(t) = tokens.get(i)
        && ACTIONS.contains(&t.text.to_ascii_lowercase().as_str())
    {
        let exec = t.text.eq_ignore_ascii_case("exec");
        i += 1;
        if exec && tokens.get(i).is_some_and(|t| t.quoted) {
            i += 1;
        }
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_release_monit_files() {
        let text = r#"
check process gorouter
  with pidfile /var/vcap/sys/run/bpm/gorouter/gorouter.pid
  start program "/var/vcap/jobs/bpm/bin/bpm start gorouter"
    with timeout 60 seconds
  stop program "/var/vcap/jobs/bpm/bin/bpm stop gorouter"
  group vcap
  depends on loggregator_agent, nats
  if failed host 127.0.0.1 port 8080 protocol http then restart
  if totalmem > 3000 Mb for 5 cycles then alert else if succeeded then alert

# a comment with "quotes
check file some_log with path /var/vcap/sys/log/x.log
  if size > 10 MB then exec "/bin/rotate"

check process nats
  with pidfile /var/vcap/sys/run/nats/nats.pid
  start program "/var/vcap/jobs/nats/bin/ctl start" as uid vcap and gid vcap
  stop program "/var/vcap/jobs/nats/bin/ctl stop"
  group vcap
  mode manual
"#;
        let svcs = parse(text).unwrap();
        assert_eq!(svcs.len(), 2);
        let g = &svcs[0];
        assert_eq!(g.name, "gorouter");
        assert_eq!(
            g.pidfile,
            PathBuf::from("/var/vcap/sys/run/bpm/gorouter/gorouter.pid")
        );
        assert_eq!(g.start_program, "/var/vcap/jobs/bpm/bin/bpm start gorouter");
        assert_eq!(g.start_timeout, Duration::from_secs(60));
        assert_eq!(
            g.stop_program.as_deref(),
            Some("/var/vcap/jobs/bpm/bin/bpm stop gorouter")
        );
        assert_eq!(g.stop_timeout, DEFAULT_PROGRAM_TIMEOUT);
        assert_eq!(g.depends_on, vec!["loggregator_agent", "nats"]);
        assert!(g.in_group("vcap"));
        assert_eq!(svcs[1].name, "nats");
        assert_eq!(svcs[1].start_program, "/var/vcap/jobs/nats/bin/ctl start");
        assert!(svcs[1].depends_on.is_empty());
    }

    #[test]
    fn incomplete_services_are_errors() {
        let err = parse("check process x\n with pidfile /p\n").unwrap_err();
        assert_eq!(err.to_string(), "check process x: no start program");
        assert!(matches!(
            parse("check process x start program \"/bin/true"),
            Err(MonitParseError::Unterminated { line: 1 })
        ));
    }
}
