//! The worker split of a Slurm job array: `sbatch --array=0-15` runs 16 tasks, each with
//! `SLURM_ARRAY_TASK_ID`, `SLURM_ARRAY_TASK_COUNT`, `SLURM_ARRAY_TASK_MIN` and (with a step,
//! `--array=0-30:2`) `SLURM_ARRAY_TASK_STEP` in its environment.

use crate::error::{PreprocessError, Result};

/// A worker index and count taken from the environment, and where from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArrayTask {
    /// This task's index, 0-based.
    pub worker: usize,
    /// Tasks in the array.
    pub workers: usize,
}

/// This process's place in a Slurm job array, if it runs in one: the worker index is the task
/// id's place among the array's ids (`(ID - MIN) / STEP`), so arrays that start at 1 or step
/// by 2 split the inputs the same way. `None` outside an array. Variables that do not add up
/// (an id outside the array, a count of 0, text where a number goes) are an error naming them.
pub fn array_task(var: impl Fn(&str) -> Option<String>) -> Result<Option<ArrayTask>> {
    let Some(id) = var("SLURM_ARRAY_TASK_ID") else {
        return Ok(None);
    };
    let number = |name: &'static str, value: &str| {
        value
            .trim()
            .parse::<usize>()
            .map_err(|_| PreprocessError::Config {
                field: "worker",
                reason: format!("{name}={value:?} is not a whole number"),
            })
    };
    let id = number("SLURM_ARRAY_TASK_ID", &id)?;
    let count = var("SLURM_ARRAY_TASK_COUNT").ok_or_else(|| PreprocessError::Config {
        field: "workers",
        reason: "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not: give \
                 --worker I --workers N"
            .into(),
    })?;
    let workers = number("SLURM_ARRAY_TASK_COUNT", &count)?;
    let min = var("SLURM_ARRAY_TASK_MIN")
        .map(|v| number("SLURM_ARRAY_TASK_MIN", &v))
        .transpose()?
        .unwrap_or(0);
    let step = var("SLURM_ARRAY_TASK_STEP")
        .map(|v| number("SLURM_ARRAY_TASK_STEP", &v))
        .transpose()?
        .unwrap_or(1)
        .max(1);
    let worker = id.checked_sub(min).map(|offset| offset / step);
    match worker {
        Some(worker) if worker < workers && (id - min).is_multiple_of(step) => {
            Ok(Some(ArrayTask { worker, workers }))
        }
        _ => Err(PreprocessError::Config {
            field: "worker",
            reason: format!(
                "SLURM_ARRAY_TASK_ID={id} is not one of the {workers} tasks from \
                 SLURM_ARRAY_TASK_MIN={min} by SLURM_ARRAY_TASK_STEP={step} (an array with \
                 gaps, such as --array=1,4,9, cannot split the inputs evenly: give --worker I \
                 --workers N)"
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::{ArrayTask, array_task};

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_string())
        }
    }

    #[test]
    fn arrays_from_zero_from_one_and_with_a_step() {
        let task = |w, n| {
            Some(ArrayTask {
                worker: w,
                workers: n,
            })
        };
        assert_eq!(array_task(env(&[])).unwrap(), None);
        let zero = [
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "16"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
        ];
        assert_eq!(array_task(env(&zero)).unwrap(), task(3, 16));
        let one = [
            ("SLURM_ARRAY_TASK_ID", "16"),
            ("SLURM_ARRAY_TASK_COUNT", "16"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ];
        assert_eq!(array_task(env(&one)).unwrap(), task(15, 16));
        let stepped = [
            ("SLURM_ARRAY_TASK_ID", "6"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
        ];
        assert_eq!(array_task(env(&stepped)).unwrap(), task(3, 4));
    }

    #[test]
    fn variables_that_do_not_add_up_are_named() {
        for (pairs, says) in [
            (
                &[("SLURM_ARRAY_TASK_ID", "3")][..],
                "SLURM_ARRAY_TASK_COUNT is not",
            ),
            (
                &[
                    ("SLURM_ARRAY_TASK_ID", "x"),
                    ("SLURM_ARRAY_TASK_COUNT", "2"),
                ][..],
                "SLURM_ARRAY_TASK_ID=\"x\"",
            ),
            (
                &[
                    ("SLURM_ARRAY_TASK_ID", "9"),
                    ("SLURM_ARRAY_TASK_COUNT", "3"),
                    ("SLURM_ARRAY_TASK_MIN", "1"),
                ][..],
                "not one of the 3 tasks",
            ),
            (
                &[
                    ("SLURM_ARRAY_TASK_ID", "0"),
                    ("SLURM_ARRAY_TASK_COUNT", "0"),
                ][..],
                "not one of the 0 tasks",
            ),
        ] {
            let err = array_task(env(pairs)).unwrap_err().to_string();
            assert!(err.contains(says), "{err}");
        }
    }
}
