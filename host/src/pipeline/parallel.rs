//! Work spread over the cores: stage 2 reads and checks files, stage 4 loads libraries, each
//! independent per file.

use parking_lot::Mutex;

/// `f` over `items` on up to as many threads as there are cores; results in input order.
pub(crate) fn parallel_map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(items.len());
    if workers <= 1 {
        return items.into_iter().map(f).collect();
    }
    let len = items.len();
    let queue = Mutex::new(items.into_iter().enumerate());
    let results = Mutex::new(Vec::with_capacity(len));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let Some((i, item)) = queue.lock().next() else {
                    break;
                };
                let result = f(item);
                results.lock().push((i, result));
            });
        }
    });
    let mut results = results.into_inner();
    results.sort_unstable_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}
