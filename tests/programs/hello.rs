// Rust std runtime check.  Prints:
//   hello from rust
//   argc=N and argv[i]=... for each argument
//   SAMEPROCESS_TEST_VAR=<value> (or "<unset>")
//   thread_result=55 (sum 1..10 computed on a spawned thread)
use std::env;
use std::thread;

fn main() {
    println!("hello from rust");
    let args: Vec<String> = env::args().collect();
    println!("argc={}", args.len());
    for (i, arg) in args.iter().enumerate() {
        println!("argv[{}]={}", i, arg);
    }
    match env::var("SAMEPROCESS_TEST_VAR") {
        Ok(value) => println!("SAMEPROCESS_TEST_VAR={}", value),
        Err(_) => println!("SAMEPROCESS_TEST_VAR=<unset>"),
    }
    let worker = thread::spawn(|| (1..=10).sum::<u32>());
    println!("thread_result={}", worker.join().unwrap());
}
