//! The merged reason of a running test (version 1's `running_reasons` and
//! `drop_redundant_messages`), in linear time. Autotest adds each reason to a
//! set, drops every message contained in another one and joins the sorted
//! rest with `", "` after every line: quadratic work per line. The set kept
//! after any sequence of insertions is exactly the maximal messages (those
//! not contained in another) of everything inserted, so this keeps the
//! maximal set of the last rendering plus the messages added since, and
//! renders only when the text is needed: the maximal set is found with one
//! Aho-Corasick automaton over the candidates, counting how often each
//! candidate occurs in all of them (a candidate occurring anywhere but in
//! itself is redundant), or, for a few candidates, by comparing them pairwise.

use std::collections::HashSet;
use std::rc::Rc;

/// Messages merged as Autotest's `running_reasons` merges them.
#[derive(Debug, Clone, Default)]
pub(crate) struct MergedReasons {
    /// The maximal messages at the last rendering, sorted.
    kept: Vec<Rc<String>>,
    /// Messages added since the last rendering, not in `kept`. Shared with
    /// the status lines they came from: a reason is never copied to be
    /// merged (it may be hundreds of megabytes).
    pending: HashSet<Rc<String>>,
    /// `", ".join(kept)`, valid when `pending` is empty and `kept` holds
    /// more than one message.
    rendered: String,
}

impl MergedReasons {
    /// A set holding `first` (if not empty), as at a test's START.
    #[cfg(test)]
    pub(crate) fn new(first: Option<&str>) -> MergedReasons {
        let mut m = MergedReasons::default();
        if let Some(r) = first {
            m.add(r);
        }
        m
    }

    /// Adds a message (empty ones are ignored, as Autotest never adds them).
    /// Returns false if the set was unchanged.
    #[cfg(test)]
    pub(crate) fn add(&mut self, message: &str) -> bool {
        self.add_shared(&Rc::new(message.to_string()))
    }

    /// [`MergedReasons::add`] of a message shared with its line (no copy).
    pub(crate) fn add_shared(&mut self, message: &Rc<String>) -> bool {
        if message.is_empty()
            || self.pending.contains(message)
            || self
                .kept
                .binary_search_by(|k| k.as_str().cmp(message.as_str()))
                .is_ok()
        {
            return false;
        }
        self.pending.insert(Rc::clone(message));
        true
    }

    /// [`MergedReasons::render`], moved out: the set is left empty (for
    /// the end of a test, when its messages are never read again).
    pub(crate) fn take_rendered(&mut self) -> String {
        self.render();
        let mut kept = std::mem::take(&mut self.kept);
        let rendered = std::mem::take(&mut self.rendered);
        match kept.len() {
            // Moved out without a copy once its line is gone.
            1 => Rc::try_unwrap(kept.pop().expect("one message"))
                .unwrap_or_else(|shared| String::clone(&shared)),
            _ => rendered,
        }
    }

    /// `", ".join(sorted(drop_redundant_messages(messages)))`.
    pub(crate) fn render(&mut self) -> &str {
        if !self.pending.is_empty() {
            let mut all = std::mem::take(&mut self.kept);
            all.extend(self.pending.drain());
            let views: Vec<&str> = all.iter().map(|m| m.as_str()).collect();
            let redundant = contained_in_another(&views);
            let mut kept: Vec<Rc<String>> = all
                .into_iter()
                .zip(redundant)
                .filter_map(|(m, r)| (!r).then_some(m))
                .collect();
            kept.sort_unstable();
            // One message is its own rendering: not copied (a reason may
            // be hundreds of megabytes).
            self.rendered = if kept.len() == 1 {
                String::new()
            } else {
                let parts: Vec<&str> = kept.iter().map(|m| m.as_str()).collect();
                parts.join(", ")
            };
            self.kept = kept;
        }
        match self.kept.as_slice() {
            [one] => one.as_str(),
            _ => &self.rendered,
        }
    }
}

/// Up to this many messages are compared pairwise (at most this many times
/// their total length, and no memory); more go through a trie (linear, but
/// about 30 bytes per message byte while it lives).
const PAIRWISE_MAX: usize = 16;

/// For distinct, non-empty messages, whether each one occurs inside
/// another.
pub(crate) fn contained_in_another<S: AsRef<str>>(messages: &[S]) -> Vec<bool> {
    let longest = messages.iter().map(|m| m.as_ref().len()).max().unwrap_or(0);
    if messages.iter().all(|m| m.as_ref().len() == longest) {
        // Distinct messages of one length never contain each other.
        vec![false; messages.len()]
    } else if messages.len() <= PAIRWISE_MAX {
        pairwise(messages)
    } else {
        by_trie(messages)
    }
}

/// Each message against every longer one (linear-time substring search).
fn pairwise<S: AsRef<str>>(messages: &[S]) -> Vec<bool> {
    messages
        .iter()
        .map(|m| {
            let m = m.as_ref();
            messages.iter().any(|o| {
                let o = o.as_ref();
                o.len() > m.len() && o.contains(m)
            })
        })
        .collect()
}

/// Linear in the messages' total length (plus sorting them): a trie of all
/// messages with Aho-Corasick failure links; every prefix of every message
/// is one (message, end position) pair, and summing those counts up the
/// failure tree gives, for each message, how many times it occurs in all of
/// them. It occurs once in itself; more means it occurs in another.
fn by_trie<S: AsRef<str>>(messages: &[S]) -> Vec<bool> {
    let trie = Trie::new(messages);
    let fail = trie.failure_links();
    let mut count = trie.passes.clone();
    for &node in trie.by_depth.iter().rev() {
        count[fail[node as usize] as usize] += count[node as usize];
    }
    trie.ends.iter().map(|&e| count[e as usize] >= 2).collect()
}

/// A byte trie of distinct messages, node 0 the root.
struct Trie {
    /// Each node's byte (0 for the root).
    byte: Vec<u8>,
    /// Each node's children, as `children[child_start[n]..child_start[n + 1]]`,
    /// in byte order.
    child_start: Vec<u32>,
    children: Vec<u32>,
    /// The root's children by byte.
    root: [u32; 256],
    /// How many messages pass through (have as prefix) each node.
    passes: Vec<u32>,
    /// Every node but the root, shallower nodes first.
    by_depth: Vec<u32>,
    /// Each message's end node.
    ends: Vec<u32>,
}

const NONE: u32 = u32::MAX;

impl Trie {
    /// Builds the trie from the messages in sorted order, so that each
    /// message shares the path of its longest common prefix with the
    /// previous one and no child is ever looked up.
    fn new<S: AsRef<str>>(messages: &[S]) -> Trie {
        let mut order: Vec<usize> = (0..messages.len()).collect();
        order.sort_unstable_by(|&a, &b| messages[a].as_ref().cmp(messages[b].as_ref()));
        let mut byte = vec![0u8];
        let mut parent = vec![NONE];
        let mut depth = vec![0u32];
        let mut passes = vec![0u32];
        let mut ends = vec![0u32; messages.len()];
        // path[d]: the node at depth d of the previous message.
        let mut path: Vec<u32> = vec![0];
        let mut previous: &[u8] = &[];
        for &i in &order {
            let m = messages[i].as_ref().as_bytes();
            let shared = m.iter().zip(previous).take_while(|(a, b)| a == b).count();
            path.truncate(shared + 1);
            for (d, &b) in m.iter().enumerate().skip(shared) {
                let n = u32::try_from(byte.len()).expect("messages under 4 GiB");
                byte.push(b);
                parent.push(path[d]);
                depth.push(u32::try_from(d + 1).expect("messages under 4 GiB"));
                passes.push(0);
                path.push(n);
            }
            for &n in &path[1..] {
                passes[n as usize] += 1;
            }
            ends[i] = path[m.len()];
            previous = m;
        }
        let nodes = byte.len();
        // Children grouped by parent; creation order keeps bytes sorted.
        let mut child_start = vec![0u32; nodes + 1];
        for &p in &parent[1..] {
            child_start[p as usize + 1] += 1;
        }
        for n in 0..nodes {
            child_start[n + 1] += child_start[n];
        }
        let mut fill = child_start.clone();
        let mut children = vec![0u32; nodes.saturating_sub(1)];
        let mut root = [NONE; 256];
        for n in 1..nodes {
            let p = parent[n] as usize;
            children[fill[p] as usize] = n as u32;
            fill[p] += 1;
            if p == 0 {
                root[usize::from(byte[n])] = n as u32;
            }
        }
        // Nodes by depth (a stable counting sort).
        let max_depth = depth.iter().copied().max().unwrap_or(0) as usize;
        let mut at = vec![0u32; max_depth + 2];
        for &d in &depth[1..] {
            at[d as usize + 1] += 1;
        }
        for d in 0..=max_depth {
            at[d + 1] += at[d];
        }
        let mut by_depth = vec![0u32; nodes - 1];
        for (n, &d) in depth.iter().enumerate().skip(1) {
            by_depth[at[d as usize] as usize] = n as u32;
            at[d as usize] += 1;
        }
        Trie {
            byte,
            child_start,
            children,
            root,
            passes,
            by_depth,
            ends,
        }
    }

    fn kids(&self, node: u32) -> &[u32] {
        let n = node as usize;
        &self.children[self.child_start[n] as usize..self.child_start[n + 1] as usize]
    }

    fn child(&self, node: u32, b: u8) -> Option<u32> {
        if node == 0 {
            let c = self.root[usize::from(b)];
            return (c != NONE).then_some(c);
        }
        let kids = self.kids(node);
        kids.binary_search_by(|&c| self.byte[c as usize].cmp(&b))
            .ok()
            .map(|i| kids[i])
    }

    /// Failure link of each node: the node of its longest proper suffix
    /// (the root's children, and the root, fail to the root).
    fn failure_links(&self) -> Vec<u32> {
        let mut fail = vec![0u32; self.byte.len()];
        for &node in &self.by_depth {
            for &c in self.kids(node) {
                let b = self.byte[c as usize];
                let mut f = fail[node as usize];
                fail[c as usize] = loop {
                    if let Some(next) = self.child(f, b) {
                        break next;
                    }
                    if f == 0 {
                        break 0;
                    }
                    f = fail[f as usize];
                };
            }
        }
        fail
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    /// Autotest's merge as it was: after every insertion, drop each message
    /// contained in another one (quadratic per line, cubic per test).
    fn reference(messages: &[String]) -> String {
        let mut set = BTreeSet::new();
        for m in messages.iter().filter(|m| !m.is_empty()) {
            set.insert(m.clone());
            let all: Vec<String> = set.iter().cloned().collect();
            set.retain(|m| {
                !all.iter()
                    .any(|other| other != m && other.contains(m.as_str()))
            });
        }
        set.into_iter().collect::<Vec<_>>().join(", ")
    }

    #[test]
    fn redundant_messages_are_dropped() {
        let mut m = MergedReasons::new(Some("a"));
        m.add("ab");
        m.add("c");
        assert_eq!(m.render(), "ab, c");
        m.add("b");
        m.add("xabc");
        assert_eq!(m.render(), "xabc");
        assert_eq!(MergedReasons::new(Some("")).render(), "");
    }

    proptest! {
        #[test]
        fn merging_equals_the_quadratic_algorithm(
            messages in prop::collection::vec("[ab,é ]{0,6}", 0..40),
            renders in prop::collection::vec(any::<bool>(), 40),
        ) {
            let mut m = MergedReasons::new(None);
            for (i, msg) in messages.iter().enumerate() {
                m.add(msg);
                if renders[i] || i + 1 == messages.len() {
                    prop_assert_eq!(m.render(), reference(&messages[..=i]));
                }
            }
        }

        #[test]
        fn trie_equals_pairwise(messages in prop::collection::btree_set("[abc]{1,7}", 0..60)) {
            let messages: Vec<String> = messages.into_iter().collect();
            prop_assert_eq!(by_trie(&messages), pairwise(&messages));
        }
    }
}
