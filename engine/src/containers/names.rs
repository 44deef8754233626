//! Container names: unique across every process using the root, reserved by creating
//! `<root>/containers/names/<name>` (holding the ID) with `O_EXCL`, so two processes
//! naming two containers alike at the same moment cannot both win.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const ADJECTIVES: &[&str] = &[
    "admiring",
    "adoring",
    "affectionate",
    "agitated",
    "amazing",
    "angry",
    "awesome",
    "beautiful",
    "blissful",
    "bold",
    "boring",
    "brave",
    "busy",
    "charming",
    "clever",
    "compassionate",
    "competent",
    "condescending",
    "confident",
    "cool",
    "cranky",
    "crazy",
    "dazzling",
    "determined",
    "distracted",
    "dreamy",
    "eager",
    "ecstatic",
    "elastic",
    "elated",
    "elegant",
    "eloquent",
    "epic",
    "exciting",
    "fervent",
    "festive",
    "flamboyant",
    "focused",
    "friendly",
    "frosty",
    "funny",
    "gallant",
    "gifted",
    "goofy",
    "gracious",
    "great",
    "happy",
    "hardcore",
    "heuristic",
    "hopeful",
    "hungry",
    "infallible",
    "inspiring",
    "intelligent",
    "interesting",
    "jolly",
    "jovial",
    "keen",
    "kind",
    "laughing",
    "loving",
    "lucid",
    "magical",
    "modest",
    "musing",
    "mystifying",
    "naughty",
    "nervous",
    "nice",
    "nifty",
    "nostalgic",
    "objective",
    "optimistic",
    "peaceful",
    "pedantic",
    "pensive",
    "practical",
    "priceless",
    "quirky",
    "quizzical",
    "recursing",
    "relaxed",
    "reverent",
    "romantic",
    "sad",
    "serene",
    "sharp",
    "silly",
    "sleepy",
    "stoic",
    "strange",
    "stupefied",
    "suspicious",
    "sweet",
    "tender",
    "thirsty",
    "trusting",
    "unruffled",
    "upbeat",
    "vibrant",
    "vigilant",
    "vigorous",
    "wizardly",
    "wonderful",
    "xenodochial",
    "youthful",
    "zealous",
    "zen",
];

const SURNAMES: &[&str] = &[
    "albattani",
    "allen",
    "archimedes",
    "ardinghelli",
    "babbage",
    "bardeen",
    "bartik",
    "bell",
    "blackwell",
    "bohr",
    "booth",
    "borg",
    "bose",
    "brahmagupta",
    "brattain",
    "brown",
    "carson",
    "cerf",
    "chandrasekhar",
    "chatelet",
    "clarke",
    "colden",
    "cori",
    "curie",
    "darwin",
    "davinci",
    "dijkstra",
    "dubinsky",
    "easley",
    "einstein",
    "elion",
    "engelbart",
    "euclid",
    "euler",
    "fermat",
    "fermi",
    "feynman",
    "franklin",
    "galileo",
    "gates",
    "goldberg",
    "goldstine",
    "goodall",
    "hamilton",
    "hawking",
    "heisenberg",
    "hermann",
    "hodgkin",
    "hopper",
    "hugle",
    "hypatia",
    "jackson",
    "jang",
    "jennings",
    "johnson",
    "kalam",
    "kepler",
    "khorana",
    "knuth",
    "kowalevski",
    "lalande",
    "lamarr",
    "leakey",
    "leavitt",
    "lehmann",
    "lovelace",
    "lumiere",
    "mayer",
    "mccarthy",
    "mcclintock",
    "mclean",
    "meitner",
    "mendel",
    "merkle",
    "mestorf",
    "mirzakhani",
    "montalcini",
    "moore",
    "morse",
    "napier",
    "nash",
    "neumann",
    "newton",
    "nobel",
    "noether",
    "northcutt",
    "noyce",
    "pare",
    "pascal",
    "pasteur",
    "payne",
    "perlman",
    "pike",
    "poincare",
    "poitras",
    "ptolemy",
    "raman",
    "ramanujan",
    "ride",
    "ritchie",
    "roentgen",
    "rosalind",
    "saha",
    "sammet",
    "shannon",
    "shaw",
    "shockley",
    "sinoussi",
    "snyder",
    "stonebraker",
    "swanson",
    "swartz",
    "tesla",
    "thompson",
    "torvalds",
    "turing",
    "varahamihira",
    "visvesvaraya",
    "volhard",
    "wescoff",
    "williams",
    "wilson",
    "wing",
    "wozniak",
    "wright",
    "yalow",
    "yonath",
];

fn dir(containers: &Path) -> PathBuf {
    containers.join("names")
}

/// Docker's rule for names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub(crate) fn validate(name: &str) -> Result<()> {
    let mut b = name.bytes();
    let first_ok = b.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok
        || name.len() < 2
        || name.len() > 255
        || !b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
    {
        return Err(Error::InvalidArgument(format!(
            "Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )));
    }
    Ok(())
}

/// Reserves `name` for `id`, or says who has it in Docker's words.
pub(crate) fn reserve(containers: &Path, name: &str, id: &str) -> Result<()> {
    let d = dir(containers);
    fs::create_dir_all(&d).map_err(Error::io(format!("create {}", d.display())))?;
    let p = d.join(name);
    match fs::OpenOptions::new().write(true).create_new(true).open(&p) {
        Ok(mut f) => {
            std::io::Write::write_all(&mut f, id.as_bytes())
                .map_err(Error::io(format!("write {}", p.display())))?;
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            let owner = fs::read_to_string(&p).unwrap_or_default();
            // a reservation whose container is gone is stale (its directory is made and
            // locked before the name is reserved, and removed before the name is freed)
            if !owner.is_empty() && !containers.join(&owner).exists() {
                let _ = fs::remove_file(&p);
                return reserve(containers, name, id);
            }
            Err(Error::Conflict(format!(
                "Conflict. The container name \"/{name}\" is already in use by container \"{owner}\". \
                 You have to remove (or rename) that container to be able to reuse that name."
            )))
        }
        Err(e) => Err(Error::io(format!("create {}", p.display()))(e)),
    }
}

/// Frees a name.
pub(crate) fn release(containers: &Path, name: &str) {
    let _ = fs::remove_file(dir(containers).join(name));
}

/// Frees `name` by moving its file into `dir` (a removed container's directory, deleted
/// later): unlinking a file with a data block costs a discard on a `discard` mount.
pub(crate) fn release_into(containers: &Path, name: &str, dir: &Path) {
    if fs::rename(self::dir(containers).join(name), dir.join(".name")).is_err() {
        release(containers, name);
    }
}

/// Frees every name container `id` holds (a killed create or rm may leave one).
pub(crate) fn release_all_of(containers: &Path, id: &str) {
    let Ok(rd) = fs::read_dir(dir(containers)) else {
        return;
    };
    for e in rd.flatten() {
        if fs::read_to_string(e.path()).is_ok_and(|owner| owner == id) {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// The ID holding `name`, if any.
pub(crate) fn lookup(containers: &Path, name: &str) -> Result<Option<String>> {
    if validate(name).is_err() {
        return Ok(None);
    }
    match fs::read_to_string(dir(containers).join(name)) {
        Ok(id) if id.len() == 64 => Ok(Some(id)),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("read name {name}"))(e)),
    }
}

/// Reserves a random `adjective_surname` name (with a digit appended after collisions).
pub(crate) fn reserve_random(containers: &Path, id: &str) -> Result<String> {
    let seed = u64::from_str_radix(&id[..16], 16).unwrap_or(0);
    for attempt in 0..64u64 {
        let x = seed.rotate_left((attempt * 7) as u32) ^ attempt;
        let a = ADJECTIVES[(x % ADJECTIVES.len() as u64) as usize];
        let s = SURNAMES[((x >> 20) % SURNAMES.len() as u64) as usize];
        let name = if attempt < 8 {
            format!("{a}_{s}")
        } else {
            format!("{a}_{s}{}", attempt % 10)
        };
        match reserve(containers, &name, id) {
            Ok(()) => return Ok(name),
            Err(Error::Conflict(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::Conflict("no free random container name".into()))
}
