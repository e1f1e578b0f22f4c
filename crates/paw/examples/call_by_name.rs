//! Calls one function of a built project by name:
//! `cargo run -p paw --example call_by_name -- paw.lock NAME "input text"`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [lock, name, input] = &args[..] else {
        #[allow(clippy::print_stderr)]
        {
            eprintln!("usage: call_by_name PAW_LOCK NAME INPUT");
        }
        return ExitCode::from(2);
    };
    let result = paw::Project::open(lock).and_then(|project| {
        let function = project.function(name)?;
        Ok(function.call(input, &paw::CallOptions::default()))
    });
    #[allow(clippy::print_stdout, clippy::print_stderr)]
    match result {
        Ok(Ok(out)) => {
            println!("{}", out.text);
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
