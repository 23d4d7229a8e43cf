//! What the simulated presentations say: session names, slide topics and
//! their sentences, the audience's questions and the avatar's answers, and
//! a pipeline whose stage latencies wander like a real one's.

use rand::Rng;
use rand::rngs::StdRng;

use crate::protocol::model::{RendererMetrics, StageLatencies};

const NAMES: [&str; 10] = [
    "Product tour: Eva Studio",
    "Q3 business review",
    "Onboarding: security basics",
    "Pricing walkthrough",
    "Customer webinar: avatars at scale",
    "Partner training: integrations",
    "Investor update",
    "Support clinic: billing",
    "Launch keynote rehearsal",
    "Research seminar: speech latency",
];

/// The name of the demo's `n`th session (1-based).
pub(super) fn session_name(n: usize) -> String {
    let base = NAMES[(n - 1) % NAMES.len()];
    let round = (n - 1) / NAMES.len();
    if round == 0 {
        base.to_owned()
    } else {
        format!("{base} #{}", round + 1)
    }
}

const TOPICS: [&str; 10] = [
    "welcome",
    "agenda",
    "the problem",
    "our approach",
    "live demo",
    "architecture",
    "pricing",
    "roadmap",
    "customer stories",
    "questions",
];

/// Slides per presentation; the last one invites questions, then it starts over.
pub(super) const SLIDES: i32 = TOPICS.len() as i32;

pub(super) fn topic(slide: i32) -> &'static str {
    TOPICS[slide.rem_euclid(SLIDES) as usize]
}

/// The sentences spoken on a slide.
pub(super) fn sentences(slide: i32) -> Vec<String> {
    let t = topic(slide);
    match slide.rem_euclid(SLIDES) {
        0 => vec![
            "Hello everyone, and welcome.".to_owned(),
            "I am Eva, and I will walk you through today's presentation.".to_owned(),
            "Ask your questions at any time; I will answer them as we go.".to_owned(),
        ],
        9 => vec![
            "That brings us to the end of the slides.".to_owned(),
            "I am happy to take your questions now.".to_owned(),
        ],
        _ => vec![
            format!("Let us look at {t}."),
            format!("Here is what matters most about {t} for your team."),
            "The numbers on this slide come from our pilot customers.".to_owned(),
            "I will keep it short and leave time for your questions.".to_owned(),
        ],
    }
}

/// What the audience asks; several people asking the same thing shows up
/// in the console's queue as one line with a count.
pub(super) const QUESTIONS: [&str; 6] = [
    "What does it cost?",
    "Is there a free trial?",
    "How is our data protected?",
    "When will it be generally available?",
    "Does it integrate with our CRM?",
    "Can the avatar speak other languages?",
];

pub(super) const AUDIENCE_NAMES: [&str; 8] = [
    "Ada", "Grace", "Linus", "Margaret", "Alan", "Barbara", "Ken", "Frances",
];

/// The avatar's answer to a question: `(text, intent, confidence, sources)`.
pub(super) fn answer(question: &str) -> (String, &'static str, f64, Vec<String>) {
    let q = question.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| q.contains(w));
    if has(&["cost", "price", "pricing", "expensive"]) {
        (
            "Plans start at 49 euros per seat and month, and the first month is free.".into(),
            "pricing",
            0.94,
            vec!["faq/pricing".into()],
        )
    } else if has(&["trial", "free"]) {
        (
            "Yes: every plan starts with a 30-day trial with all features included.".into(),
            "trial",
            0.91,
            vec!["faq/trial".into()],
        )
    } else if has(&["data", "secur", "privacy", "protect", "gdpr"]) {
        (
            "Your data stays in your region, encrypted in transit and at rest, and is never used for training.".into(),
            "security",
            0.88,
            vec!["docs/security".into(), "faq/privacy".into()],
        )
    } else if has(&["when", "available", "launch", "timeline"]) {
        (
            "General availability is planned for the first quarter; the beta is open now.".into(),
            "timeline",
            0.83,
            vec!["roadmap".into()],
        )
    } else if has(&["integrat", "crm", "api", "salesforce"]) {
        (
            "There is a REST API, webhooks and ready-made connectors for the major CRMs.".into(),
            "integrations",
            0.86,
            vec!["docs/integrations".into()],
        )
    } else if has(&["language", "speak", "german", "french", "spanish"]) {
        (
            "I speak 28 languages today, and switch when the audience asks me to.".into(),
            "languages",
            0.9,
            vec!["faq/languages".into()],
        )
    } else {
        let short: String = question.chars().take(80).collect();
        (
            format!(
                "Thank you for asking \u{201c}{short}\u{201d}. In short: yes, and the team will follow up with the details after the session."
            ),
            "general",
            0.62,
            Vec::new(),
        )
    }
}

/// A speech pipeline's latencies: each stage wanders around its own level,
/// with the odd slow LLM call.
#[derive(Debug)]
pub(super) struct Pipeline {
    stt: f64,
    llm: f64,
    tts: f64,
    cpu: f64,
    gpu: f64,
}

impl Pipeline {
    pub(super) fn new() -> Pipeline {
        Pipeline {
            stt: 120.0,
            llm: 620.0,
            tts: 210.0,
            cpu: 0.55,
            gpu: 0.72,
        }
    }

    /// The next report; `thinking` adds the load of answering.
    pub(super) fn sample(&mut self, rng: &mut StdRng, thinking: bool) -> RendererMetrics {
        let walk = |v: f64, level: f64, spread: f64, rng: &mut StdRng| {
            (v + (level - v) * 0.2 + rng.random_range(-spread..spread)).max(1.0)
        };
        self.stt = walk(self.stt, 120.0, 18.0, rng);
        self.llm = walk(self.llm, if thinking { 900.0 } else { 600.0 }, 70.0, rng);
        if rng.random_bool(0.04) {
            self.llm += rng.random_range(400.0..1200.0);
        }
        self.tts = walk(self.tts, 210.0, 25.0, rng);
        self.cpu = (self.cpu + rng.random_range(-0.04..0.04)).clamp(0.25, 0.95);
        self.gpu = (self.gpu + rng.random_range(-0.03..0.03)).clamp(0.4, 0.97);
        let total = self.stt + self.llm + self.tts + rng.random_range(30.0..60.0);
        let round = |v: f64| (v * 10.0).round() / 10.0;
        RendererMetrics {
            latency_ms: Some(round(total)),
            cpu_usage: Some(round(self.cpu * 100.0) / 100.0),
            gpu_usage: Some(round(self.gpu * 100.0) / 100.0),
            memory_usage: Some(round(rng.random_range(0.55..0.62) * 100.0) / 100.0),
            fps: Some(round(rng.random_range(29.0..30.5))),
            stages: StageLatencies {
                stt_ms: Some(round(self.stt)),
                llm_ms: Some(round(self.llm)),
                tts_ms: Some(round(self.tts)),
                total_ms: Some(round(total)),
            },
            component: Some("pipeline".to_owned()),
        }
    }

    /// How long the last answer took to produce, as the response reports it.
    pub(super) fn response_time_ms(&self) -> u32 {
        (self.stt + self.llm + self.tts) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn names_repeat_with_a_round_number() {
        assert_eq!(session_name(1), "Product tour: Eva Studio");
        assert_eq!(session_name(11), "Product tour: Eva Studio #2");
    }

    #[test]
    fn every_slide_has_sentences_and_every_question_an_answer() {
        for s in 0..SLIDES {
            assert!(!sentences(s).is_empty());
        }
        for q in QUESTIONS {
            assert_ne!(answer(q).1, "general", "{q}");
        }
    }

    #[test]
    fn metrics_stay_in_range() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut p = Pipeline::new();
        for i in 0..1000 {
            let m = p.sample(&mut rng, i % 3 == 0);
            for (_, v, _) in m.values() {
                assert!(v.is_finite() && (0.0..1_000_000.0).contains(&v));
            }
            assert!(m.cpu_usage.unwrap() <= 1.0);
        }
    }
}
