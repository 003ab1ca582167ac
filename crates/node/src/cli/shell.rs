//! `consensusdb shell`: the client commands at a prompt, with line editing
//! and history when a person types, and plain line reading when a script
//! pipes commands in.
//!
//! The shell is ordinary blocking code: it reads a line, then drives the
//! command to completion on the runtime. Nothing async ever waits on the
//! terminal.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

use crate::cli::ConnectArgs;
use crate::cli::commands::ClientCommand;
use crate::cli::failure::CliError;
use crate::cli::render::{Format, Output};

const PROMPT: &str = "consensusdb> ";

/// One line typed at the shell.
#[derive(Debug, Parser)]
#[command(multicall = true, disable_version_flag = true)]
struct ShellLine {
    #[command(subcommand)]
    command: ShellCommand,
}

#[derive(Debug, Subcommand)]
enum ShellCommand {
    #[command(flatten)]
    Client(ClientCommand),
    /// Print results as `json` lines or a `table`.
    Format {
        /// The output format.
        #[arg(value_enum)]
        format: Format,
    },
    /// Leave the shell (Ctrl-D works too).
    #[command(visible_alias = "quit")]
    Exit,
}

/// Where lines come from.
enum Input {
    /// A person at a terminal: editing, history, Ctrl-C to clear a line.
    Terminal { editor: Box<DefaultEditor>, history: Option<PathBuf> },
    /// A script on standard input: no prompt, no history.
    Piped(std::io::StdinLock<'static>),
}

impl Input {
    fn open(history: Option<PathBuf>) -> Result<Self, CliError> {
        if !std::io::stdin().is_terminal() {
            return Ok(Input::Piped(std::io::stdin().lock()));
        }
        let mut editor = DefaultEditor::new().map_err(|e| std::io::Error::other(e.to_string()))?;
        if let Some(path) = &history {
            // A first run has no history yet; anything else is worth a warning.
            if let Err(error) = editor.load_history(path)
                && path.exists()
            {
                eprintln!("warning: cannot read history {}: {error}", path.display());
            }
        }
        Ok(Input::Terminal { editor: Box::new(editor), history })
    }

    /// The next line, or `None` at the end of input.
    fn next_line(&mut self) -> Result<Option<String>, CliError> {
        match self {
            Input::Piped(stdin) => {
                let mut line = String::new();
                Ok((stdin.read_line(&mut line)? > 0).then_some(line))
            }
            Input::Terminal { editor, .. } => loop {
                match editor.readline(PROMPT) {
                    Ok(line) => {
                        if !line.trim().is_empty() {
                            let _ = editor.add_history_entry(line.as_str());
                        }
                        return Ok(Some(line));
                    }
                    // Ctrl-C abandons the line, as in bash; Ctrl-D leaves.
                    Err(ReadlineError::Interrupted) => continue,
                    Err(ReadlineError::Eof) => return Ok(None),
                    Err(error) => return Err(std::io::Error::other(error.to_string()).into()),
                }
            },
        }
    }

    fn is_terminal(&self) -> bool {
        matches!(self, Input::Terminal { .. })
    }

    fn save_history(&mut self) {
        if let Input::Terminal { editor, history: Some(path) } = self
            && let Err(error) = editor.save_history(path)
        {
            eprintln!("warning: cannot save history to {}: {error}", path.display());
        }
    }
}

/// The default history file, `~/.consensusdb_history`.
pub fn default_history() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".consensusdb_history"))
}

/// Runs the shell until `exit` or the end of input. Returns the exit code:
/// 0, or for piped input the code of the last command that failed, so a
/// script can tell.
pub fn run(
    connect: &ConnectArgs,
    history: Option<PathBuf>,
    runtime: &tokio::runtime::Runtime,
) -> Result<u8, CliError> {
    let client = connect.client()?;
    let mut keychains = connect.keychains()?;
    let mut input = Input::open(history)?;
    let mut out = Output::new(connect.format, std::io::stdout());
    if input.is_terminal() {
        println!(
            "ConsensusDB shell on {}. Type `help` for commands, `exit` to leave.",
            connect.servers.join(", ")
        );
    }
    let mut last_failure = 0;
    while let Some(line) = input.next_line()? {
        let words = match shell_words::split(&line) {
            Ok(words) if words.is_empty() => continue,
            Ok(words) => words,
            Err(error) => {
                eprintln!("error: {error}");
                last_failure = 2;
                continue;
            }
        };
        if words[0].starts_with('#') {
            continue;
        }
        let command = match ShellLine::try_parse_from(&words) {
            Ok(parsed) => parsed.command,
            Err(error) if !error.use_stderr() => {
                // `help`, `help put`, `put --help`: the text is the answer.
                print!("{}", error.render());
                std::io::stdout().flush()?;
                continue;
            }
            Err(error) => {
                eprint!("{}", error.render());
                last_failure = 2;
                continue;
            }
        };
        match command {
            ShellCommand::Exit => break,
            ShellCommand::Format { format } => out.set_format(format)?,
            ShellCommand::Client(command) => {
                let result = runtime.block_on(command.run(&client, &mut keychains, &mut out));
                out.finish()?;
                if let Err(error) = result {
                    eprintln!("error: {error}");
                    last_failure = error.exit_code();
                }
            }
        }
    }
    input.save_history();
    Ok(if input.is_terminal() { 0 } else { last_failure })
}
