"""The words the synthetic traffic is made of: topic phrase banks, toxic text, and fake sensitive values.

Kept apart from `monitor.synthetic.generator` so the generator reads as logic and this module reads as data. Text is
templated: a template's ``{slot}`` is filled from the topic's slot lists once, when the generator starts,
so producing a record only picks precomputed strings. The value makers (`make_card`, `make_iban`, ...)
take a `random.Random` and return strings that pass the checks a real detector applies (Luhn, IBAN
mod-97, SSN area rules, key prefixes and alphabets); the hard-negative makers return look-alikes that
must fail those checks.

>>> import random
>>> rng = random.Random(7)
>>> luhn_ok(make_card(rng).replace(" ", "").replace("-", ""))
True
>>> iban_ok(make_iban(rng).replace(" ", ""))
True
"""

from __future__ import annotations

import base64
import random
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import orjson


@dataclass(frozen=True)
class Topic:
    """One subject users ask about: prompt templates and the sentences an answer is built from."""

    name: str
    prompts: tuple[str, ...]
    openers: tuple[str, ...]
    body: tuple[str, ...]
    closers: tuple[str, ...]
    slots: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    snippets: tuple[str, ...] = ()


_CODING = Topic(
    name="coding",
    prompts=(
        "How do I {task} in {lang}?",
        "Write a {lang} function to {task}.",
        "I'm getting `{error}` when I try to {task}. What am I doing wrong?",
        "What's the idiomatic way to {task} in {lang}? I'm using {lib}.",
        "Can you review this approach: I {task_past} with a loop, but it's slow on big inputs.",
        "Explain the difference between {concept_a} and {concept_b} in {lang}.",
        "My {lang} tests fail with `{error}` only in CI. Any idea why?",
        "Refactor my code so it can {task} without blocking the event loop.",
        "What is the time complexity of {algo}, and when should I use it?",
        "Give me a short example of {concept_a} in {lang}.",
    ),
    openers=(
        "Sure! Here's how you can {task} in {lang}.",
        "Good question. The short answer is that {lang} gives you a couple of ways to {task}.",
        "That error usually means the value you are indexing is not what you think it is.",
        "Happy to help. Let's break this down step by step.",
        "Here is a clean, idiomatic way to approach it.",
    ),
    body=(
        "The simplest approach is to use {lib}, which handles the edge cases for you.",
        "If you need more control, write a small helper that does one thing and test it in isolation.",
        "`{error}` is raised when the input is empty, so guard against that case before you {task}.",
        "Keep in mind that {concept_a} and {concept_b} behave differently when the collection is mutated.",
        "For large inputs, {algo} runs in O(n log n), which is usually fast enough.",
        "Avoid building strings in a loop; collect the parts in a list and join them once at the end.",
        "You can add type hints so your editor catches the mismatch before the code ever runs.",
        "Wrap the network call in a retry with exponential backoff and a hard limit on attempts.",
        "In {lang}, the standard library already covers this, so you don't need an extra dependency.",
        "Make sure the file is opened with an explicit encoding, otherwise the default depends on the OS.",
        "Write a unit test with a tiny input first, then one with a realistic input size.",
        "If the function is called often, cache the compiled pattern instead of compiling it every time.",
        "Logging the intermediate values will quickly show you where the data goes wrong.",
        "The reason it works locally but not in CI is often a different working directory or time zone.",
        "Prefer immutable data here; it makes the concurrency story much simpler.",
        "Profiling before optimizing will tell you whether the bottleneck is really where you think it is.",
        "Use a context manager so the connection is closed even when an exception is raised.",
        "Note that {lib} returns a lazy iterator, so materialize it if you need to traverse it twice.",
        "A generator keeps memory flat because it produces one item at a time.",
        "Pin your dependency versions so that a new release of {lib} cannot break your build.",
        "The edge case to watch for is an empty string, which is falsy but not None.",
        "Split the parsing from the validation so each part stays easy to read and to test.",
    ),
    closers=(
        "Let me know if you want me to adapt this to your codebase.",
        "Hope this helps! Feel free to paste the full traceback if it still fails.",
        "If you share a minimal reproducible example, I can dig deeper.",
        "That should get you unblocked; happy coding!",
    ),
    slots={
        "lang": ("Python", "TypeScript", "Go", "Rust", "Java", "C#", "Kotlin", "JavaScript"),
        "task": (
            "parse a CSV file", "reverse a linked list", "debounce a function", "read environment variables",
            "retry an HTTP request", "connect to PostgreSQL", "sort a list of dictionaries by a key",
            "read a large file line by line", "validate an email address", "merge two sorted arrays",
            "serialize a dataclass to JSON", "run tasks concurrently", "paginate an API",
        ),
        "task_past": (
            "parse the CSV", "deduplicate the records", "compute the running totals",
            "flatten the nested lists",
        ),
        "lib": ("pandas", "requests", "asyncio", "lodash", "serde", "Jackson", "SQLAlchemy",
                "the csv module"),
        "error": (
            "KeyError: 'name'", "TypeError: 'NoneType' object is not subscriptable",
            "IndexError: list index out of range", "NullPointerException", "panic: runtime error",
            "UnicodeDecodeError", "ModuleNotFoundError: No module named 'yaml'",
            "Cannot read properties of undefined",
        ),
        "concept_a": ("a list", "a tuple", "an interface", "a goroutine", "a closure", "async/await",
                      "a trait"),
        "concept_b": ("a set", "a generator", "an abstract class", "a thread", "a class", "callbacks",
                      "a struct"),
        "algo": ("merge sort", "quicksort", "binary search", "Dijkstra's algorithm", "a heap-based top-k"),
    },
    snippets=(
        "```python\ndef chunked(items, size):\n    for i in range(0, len(items), size):\n"
        "        yield items[i:i + size]\n```",
        "```python\nimport csv\n\nwith open(path, newline='', encoding='utf-8') as f:\n"
        "    rows = list(csv.DictReader(f))\n```",
        "```typescript\nfunction debounce(fn: () => void, ms: number) {\n"
        "  let t: ReturnType<typeof setTimeout>;\n"
        "  return () => { clearTimeout(t); t = setTimeout(fn, ms); };\n}\n```",
        "```go\nfor i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {\n\ts[i], s[j] = s[j], s[i]\n}\n```",
        "```python\nrecords.sort(key=lambda r: r['created_at'], reverse=True)\n```",
        "```rust\nlet total: u64 = values.iter().filter(|v| **v > 0).sum();\n```",
    ),
)

_TRAVEL = Topic(
    name="travel",
    prompts=(
        "Plan a {days}-day trip to {city} for {who}.",
        "What's the best time of year to visit {city}?",
        "I have a layover of {hours} hours in {city}. Is it worth leaving the airport?",
        "Suggest a budget itinerary for {city} and {city2}, around {budget} in total.",
        "How do I get from the airport to the city center in {city}?",
        "What should I pack for {season} in {city}?",
        "Is it better to take the train or fly from {city} to {city2}?",
        "Which neighborhoods in {city} are good to stay in for {who}?",
    ),
    openers=(
        "{city} is a fantastic choice! Here's a plan that balances sights and downtime.",
        "Great question. The answer depends on what you enjoy, but here is what most travelers find.",
        "Here's a suggested itinerary for {city}.",
        "You'll love it. Let me give you a practical overview.",
    ),
    body=(
        "Start your first morning at {sight}, ideally before the crowds arrive around ten.",
        "In the afternoon, wander through {area}, which is full of small cafés and independent shops.",
        "Public transport in {city} is reliable, and a multi-day pass usually pays for itself quickly.",
        "If you are traveling with {who}, book the popular attractions online a few days ahead.",
        "{season} can be unpredictable, so pack layers and a light rain jacket.",
        "The train from {city} to {city2} takes a few hours and drops you right in the center.",
        "For dinner, look for places a couple of streets away from the main squares; they are better.",
        "A day trip to {city2} is easy and gives you a completely different atmosphere.",
        "Budget roughly {budget} for accommodation, food and transport if you stay in mid-range hotels.",
        "Many museums are free on the first Sunday of the month, so plan around that if you can.",
        "Keep an eye on your belongings in busy areas and on crowded trains.",
        "Staying in {area} puts you within walking distance of most of the sights.",
        "Try to leave one afternoon unplanned; some of the best moments happen when you just explore.",
        "Airport express trains are usually faster than taxis at rush hour.",
        "Check whether you need a visa or an electronic travel authorization well before you book.",
        "Travel insurance that covers cancellations is worth it for longer trips.",
    ),
    closers=(
        "Have a wonderful trip!",
        "Enjoy {city}, and let me know if you want restaurant recommendations.",
        "Safe travels! I can adjust the plan if your dates change.",
    ),
    slots={
        "city": ("Lisbon", "Kyoto", "Mexico City", "Prague", "Vancouver", "Marrakech", "Seoul", "Edinburgh",
                 "Buenos Aires", "Istanbul", "Copenhagen", "Hanoi"),
        "city2": ("Porto", "Osaka", "Puebla", "Vienna", "Victoria", "Fes", "Busan", "Glasgow", "Montevideo",
                  "Cappadocia", "Malmö", "Ha Long Bay"),
        "days": ("3", "4", "5", "7", "10"),
        "hours": ("6", "8", "10", "12"),
        "who": ("a family with two kids", "a couple", "a solo traveler", "a group of friends", "retirees"),
        "budget": ("$1,500", "€2,000", "$3,000", "£1,200"),
        "season": ("spring", "summer", "autumn", "winter", "the rainy season"),
        "sight": ("the old town", "the main cathedral", "the castle", "the central market", "the harbor"),
        "area": ("the old quarter", "the riverside district", "the university neighborhood",
                 "the arts district"),
    },
)

_COOKING = Topic(
    name="cooking",
    prompts=(
        "How do I make {dish} without {ingredient}?",
        "Give me a quick weeknight recipe using {ingredient} and {ingredient2}.",
        "Why does my {dish} always turn out {problem}?",
        "What can I substitute for {ingredient} in {dish}?",
        "How long should I {method} {ingredient}?",
        "Suggest a vegetarian version of {dish}.",
        "What's a good side dish to serve with {dish}?",
    ),
    openers=(
        "Great choice! {dish} is easier than it looks.",
        "That usually happens for one of two reasons, and both are easy to fix.",
        "Here's a simple recipe that works every time.",
        "Absolutely, here is what I'd suggest.",
    ),
    body=(
        "Start by bringing everything to room temperature, which helps the {ingredient} cook evenly.",
        "Season generously with salt early on; it draws out moisture and builds flavor.",
        "If your {dish} turns out {problem}, the heat is probably too high, so lower it and be patient.",
        "You can swap {ingredient} for {ingredient2}, although the texture will be slightly different.",
        "{method} the {ingredient} for about ten minutes, turning once halfway through.",
        "A squeeze of lemon at the end brightens the whole dish.",
        "Let the meat rest for five minutes before slicing so the juices stay inside.",
        "Toast the spices in a dry pan for a minute to wake up their aroma.",
        "Use a heavy-bottomed pan; it distributes heat evenly and prevents burning.",
        "For a vegetarian version, roasted mushrooms or chickpeas give a similar depth of flavor.",
        "Taste as you go and adjust the seasoning before serving.",
        "Leftovers keep in the fridge for three days in an airtight container.",
        "Preheat the oven properly; most recipes assume it has been hot for at least fifteen minutes.",
        "Measure flour by weight rather than by cup for consistent results.",
        "Serve it with {side} for a complete meal.",
    ),
    closers=("Enjoy your meal!", "Bon appétit!", "Let me know how it turns out."),
    slots={
        "dish": ("risotto", "banana bread", "chicken curry", "pad thai", "lasagna", "shakshuka", "pancakes",
                 "beef stew", "sourdough bread", "ramen", "tacos al pastor"),
        "ingredient": ("eggs", "butter", "garlic", "chicken thighs", "tofu", "salmon", "rice", "heavy cream",
                       "buttermilk", "onions"),
        "ingredient2": ("yogurt", "olive oil", "shallots", "tempeh", "cod", "quinoa", "coconut milk",
                        "leeks"),
        "problem": ("dry", "soggy", "bland", "burnt on the bottom", "dense", "too salty"),
        "method": ("roast", "simmer", "sear", "bake", "grill", "steam"),
        "side": ("a green salad", "roasted vegetables", "garlic bread", "steamed rice", "a cucumber salad"),
    },
)

_FINANCE = Topic(
    name="finance",
    prompts=(
        "Should I pay off my {debt} or invest in {asset} first?",
        "How does {concept} work, in simple terms?",
        "I earn {income} a year. How much should I save for retirement?",
        "What's the difference between {asset} and {asset2}?",
        "How do I build an emergency fund on a tight budget?",
        "Explain {concept} like I'm new to investing.",
        "Is it a good idea to use my {debt} to buy {asset}?",
    ),
    openers=(
        "This is a common question, and the right answer depends on your situation.",
        "Here's a simple way to think about {concept}.",
        "I'm not a financial advisor, but here are the general principles most experts agree on.",
        "Good thinking to plan ahead.",
    ),
    body=(
        "A common rule of thumb is to keep three to six months of expenses in an emergency fund.",
        "If your {debt} has an interest rate above seven percent, paying it down is usually a safe win.",
        "{concept} lets your money grow because returns themselves start earning returns over time.",
        "{asset} tends to be more volatile than {asset2}, but has historically returned more over decades.",
        "Low-cost index funds spread your risk across hundreds of companies.",
        "Automating a monthly transfer makes saving a habit rather than a decision.",
        "On an income of {income}, saving fifteen percent including any employer match is a solid target.",
        "Avoid timing the market; consistent contributions usually beat trying to guess the bottom.",
        "Check the fees carefully, because a one percent annual fee compounds into a large sum over decades.",
        "Diversification means not putting all of your savings into a single stock or sector.",
        "Tax-advantaged accounts are usually the first place to invest after your emergency fund is built.",
        "Write down your goals and time horizon; they decide how much risk you can reasonably take.",
        "Rebalancing once a year keeps your portfolio aligned with the mix you chose.",
    ),
    closers=(
        "Consider talking to a fee-only advisor for advice tailored to you.",
        "Small, consistent steps add up faster than you might expect.",
        "Good luck, and feel free to ask follow-up questions.",
    ),
    slots={
        "debt": ("student loans", "credit card balance", "car loan", "mortgage", "personal loan"),
        "asset": ("index funds", "individual stocks", "bonds", "real estate", "a Roth IRA", "ETFs"),
        "asset2": ("savings accounts", "certificates of deposit", "treasury bills", "money market funds"),
        "concept": ("compound interest", "dollar-cost averaging", "an expense ratio", "a 401(k) match",
                    "capital gains tax", "asset allocation"),
        "income": ("$45,000", "$60,000", "$85,000", "$120,000", "€50,000"),
    },
)

_HEALTH = Topic(
    name="health",
    prompts=(
        "What are common causes of {symptom}?",
        "How much {activity} should I do per week to stay healthy?",
        "Is it normal to feel {symptom} after {activity}?",
        "What are some tips to improve my {goal}?",
        "What foods are good for {goal}?",
        "How can I tell if {symptom} is serious?",
    ),
    openers=(
        "I'm not a doctor, but I can share some general information.",
        "That's a good question, and it's worth paying attention to.",
        "Here are some evidence-based tips.",
    ),
    body=(
        "{symptom} is often caused by dehydration, poor sleep, or stress.",
        "Most guidelines recommend at least 150 minutes of moderate {activity} per week.",
        "If the {symptom} last more than a few days or get worse, please see a healthcare professional.",
        "Improving your {goal} usually starts with consistent sleep and wake times.",
        "A balanced diet with plenty of vegetables, whole grains and protein supports your {goal}.",
        "Start slowly and increase intensity gradually to avoid injury.",
        "Drinking water regularly throughout the day helps more than drinking a lot at once.",
        "Limiting screens an hour before bed can make it easier to fall asleep.",
        "Keeping a short journal of symptoms helps your doctor spot patterns.",
        "Stretching after {activity} can reduce muscle soreness the next day.",
        "Seek emergency care right away if you have chest pain, trouble breathing, or sudden weakness.",
        "Small changes, like taking the stairs or a short walk after meals, add up over time.",
    ),
    closers=("Take care of yourself!", "Please check with your doctor before making big changes.",
             "Wishing you good health."),
    slots={
        "symptom": ("headaches", "fatigue", "lower back pain", "dizziness", "trouble sleeping",
                    "sore muscles"),
        "activity": ("exercise", "running", "strength training", "cycling", "yoga", "walking"),
        "goal": ("sleep quality", "energy levels", "heart health", "digestion", "posture", "focus"),
    },
)

_SUPPORT = Topic(
    name="customer_support",
    prompts=(
        "My {product} stopped working after the last update. What should I do?",
        "I want to return my {product}. How does that work?",
        "I was charged twice for my {plan} subscription.",
        "How do I reset my password?",
        "Where is my order? It was supposed to arrive {when}.",
        "Can I change the shipping address on my order?",
        "How do I cancel my {plan} plan?",
        "The {product} I received is damaged. Can I get a replacement?",
        "Why can't I log in to my account on the mobile app?",
    ),
    openers=(
        "I'm sorry to hear that you're having trouble with your {product}.",
        "Thanks for reaching out! I'd be happy to help.",
        "I understand how frustrating that must be. Let's get this sorted out.",
        "Thank you for contacting support.",
    ),
    body=(
        "First, try restarting the {product} and checking that it is running the latest version.",
        "You can start a return from the Orders page within 30 days of delivery.",
        "Duplicate charges are usually temporary authorizations that disappear within a few business days.",
        "To reset your password, click 'Forgot password' on the sign-in page and follow the emailed link.",
        "Shipping updates can take up to 24 hours to appear after the carrier scans the package.",
        "If the package still hasn't arrived {when}, we will send a replacement at no cost.",
        "You can change the shipping address as long as the order has not been handed to the carrier yet.",
        "To cancel your {plan} plan, go to Settings, then Billing, and choose 'Cancel subscription'.",
        "Please include a photo of the damage so we can process the replacement quickly.",
        "Clearing the app cache and signing in again fixes most login issues on mobile.",
        "Your refund will be issued to the original payment method once we receive the item.",
        "If the problem continues, our support team is available around the clock via chat.",
        "I've made a note on your account so the next agent can see the full history.",
        "The {plan} plan renews automatically unless it is cancelled before the renewal date.",
    ),
    closers=(
        "Is there anything else I can help you with today?",
        "Thanks for your patience, and have a great day!",
        "Let us know if the issue persists.",
    ),
    slots={
        "product": ("wireless headphones", "smart thermostat", "laptop", "fitness tracker", "coffee maker",
                    "router", "e-reader", "robot vacuum", "phone case"),
        "plan": ("Premium", "Family", "Pro", "Basic", "annual", "Business"),
        "when": ("yesterday", "last Friday", "three days ago", "by Monday", "within a week"),
    },
)

_SCIENCE = Topic(
    name="science",
    prompts=(
        "Explain {phenomenon} in simple terms.",
        "Why is {question}?",
        "Summarize the latest research on {field}.",
        "What's the difference between {thing_a} and {thing_b}?",
        "Give me a short overview of {field} for a high-school student.",
    ),
    openers=(
        "Great question! Here's a simple explanation.",
        "{phenomenon} is one of the most fascinating topics in science.",
        "Here's a short overview.",
    ),
    body=(
        "At its core, {phenomenon} is about how energy moves from one place to another.",
        "Scientists study {field} with a mix of careful experiments and mathematical models.",
        "{thing_a} and {thing_b} are often confused, but they describe different things.",
        "A helpful analogy is to imagine water flowing through a series of pipes.",
        "Recent studies in {field} suggest the effect is smaller than early experiments indicated.",
        "The key idea is that small changes can accumulate into large effects over long periods.",
        "Measurements taken over many years show a clear and consistent trend.",
        "This is why replication is so important: a single study can be misleading.",
        "Researchers are still debating the details, but the overall picture is well established.",
        "You can observe a simple version of this at home with a glass of water and a flashlight.",
    ),
    closers=("Science is full of surprises!", "Let me know if you'd like more detail on any part.",),
    slots={
        "phenomenon": ("photosynthesis", "quantum entanglement", "plate tectonics", "natural selection",
                       "the greenhouse effect", "nuclear fusion"),
        "question": ("the sky blue", "the ocean salty", "ice slippery",
                     "the moon always showing the same face"),
        "field": ("gene editing", "exoplanets", "battery chemistry", "neuroscience", "climate modeling"),
        "thing_a": ("weather", "a virus", "speed", "mass", "an atom"),
        "thing_b": ("climate", "a bacterium", "velocity", "weight", "a molecule"),
    },
)

_WRITING = Topic(
    name="writing",
    prompts=(
        "Write a short {kind} about {subject}.",
        "Help me improve this {kind}: it feels too {flaw}.",
        "Draft a polite email to my {recipient} asking for {request}.",
        "Give me five title ideas for a blog post about {subject}.",
        "Proofread my {kind} and make it sound more {tone}.",
    ),
    openers=(
        "Here's a draft you can adapt.",
        "Happy to help with your {kind}!",
        "Sure, here is a version with a more {tone} tone.",
    ),
    body=(
        "Open with a single concrete detail about {subject} to pull the reader in.",
        "Keep sentences short where the tension rises and longer where you want the reader to linger.",
        "If it feels too {flaw}, cut the adjectives and let the verbs do the work.",
        "Dear {recipient}, I hope you are doing well, and thank you for your support this quarter.",
        "I wanted to ask whether {request} might be possible in the coming weeks.",
        "Reading the text out loud is the fastest way to hear awkward phrasing.",
        "End with a clear next step so the reader knows exactly what to do.",
        "A more {tone} tone comes from precise words rather than from extra exclamation marks.",
        "Consider moving the strongest point to the first paragraph.",
        "The morning light fell across {subject}, and for a moment everything was quiet.",
    ),
    closers=("Feel free to tweak the wording to match your voice.", "Good luck with it!"),
    slots={
        "kind": ("poem", "cover letter", "short story", "toast", "product description", "essay"),
        "subject": ("the ocean", "an old lighthouse", "a first job", "autumn in the city", "a rescue dog"),
        "flaw": ("wordy", "formal", "flat", "long", "repetitive"),
        "recipient": ("manager", "landlord", "professor", "client", "team"),
        "request": ("a deadline extension", "a day off next Friday", "a salary review",
                    "feedback on my draft"),
        "tone": ("confident", "friendly", "professional", "warm", "concise"),
    },
)

# Topics that appear only during a `topic_shift` incident: the population drifts to something new.
_LEGAL = Topic(
    name="legal",
    prompts=(
        "Can my landlord {action} without notice?",
        "What should I include in a {document}?",
        "Is a verbal {document} legally binding?",
        "How do I dispute a {dispute}?",
    ),
    openers=("I'm not a lawyer, but here is some general information.",
             "Laws vary by jurisdiction, but generally:"),
    body=(
        "In most places a landlord must give written notice before they {action}.",
        "A {document} should name the parties, the obligations of each, and how disputes are resolved.",
        "Verbal agreements can be binding, but they are much harder to prove in court.",
        "Keep copies of every letter and email; a clear paper trail is your strongest evidence.",
        "To dispute a {dispute}, respond in writing before the deadline stated on the notice.",
        "Small claims court is designed for people who represent themselves.",
        "A local tenants' union or legal aid clinic can often review your case for free.",
        "Read the termination clause carefully, because it decides what happens if things go wrong.",
    ),
    closers=("Consider consulting a licensed attorney in your area.",),
    slots={
        "action": ("enter my apartment", "raise the rent", "keep my deposit", "change the locks"),
        "document": ("rental agreement", "freelance contract", "non-disclosure agreement", "will"),
        "dispute": ("parking ticket", "credit report error", "medical bill", "security deposit deduction"),
    },
)

_GAMING = Topic(
    name="gaming",
    prompts=(
        "What's the best build for a {role} in {game}?",
        "How do I beat the {boss} in {game}?",
        "Any tips to improve my aim in {game}?",
        "Which {genre} games are worth playing this year?",
    ),
    openers=("Great question, gamer!", "Here's what works well in the current patch."),
    body=(
        "For a {role}, prioritize mobility early and pick up damage items once you have your core kit.",
        "The {boss} telegraphs its big attack, so dodge to the left as soon as it raises its arm.",
        "Lower your mouse sensitivity and practice tracking in the training range for ten minutes a day.",
        "Many {genre} fans recommend starting on normal difficulty and raising it once you know the systems.",
        "Upgrade your armor before the second act; the difficulty spikes sharply there.",
        "Playing with a team that communicates matters more than any single build.",
        "Watch replays of your own matches to spot positioning mistakes.",
    ),
    closers=("Good luck out there!", "GG, and have fun!"),
    slots={
        "role": ("tank", "healer", "sniper", "support", "mage"),
        "game": ("Elden Ring", "Valorant", "Baldur's Gate 3", "League of Legends", "Hollow Knight"),
        "boss": ("final boss", "dragon", "twin knights", "first guardian"),
        "genre": ("roguelike", "strategy", "RPG", "co-op", "puzzle"),
    },
)

TOPICS: dict[str, Topic] = {t.name: t for t in (_CODING, _TRAVEL, _COOKING, _FINANCE, _HEALTH, _SUPPORT,
                                                 _SCIENCE, _WRITING)}
"""Topics of baseline traffic."""
SHIFT_TOPICS: dict[str, Topic] = {t.name: t for t in (_LEGAL, _GAMING)}
"""Topics that baseline traffic never has; a `topic_shift` incident brings them in."""

SYSTEM_PROMPTS: dict[str, str] = {
    "support-bot": "You are a friendly customer support assistant for an online electronics store. "
                   "Be concise, polite and never promise refunds you cannot issue.",
    "code-assistant": "You are an expert programming assistant. Answer with correct, idiomatic code and "
                      "short explanations.",
    "travel-planner": "You are a travel planning assistant. Suggest practical itineraries with budgets.",
    "search-summary": "Summarize the answer to the user's question using the retrieved documents.",
}

REFUSALS: tuple[str, ...] = (
    "I'm sorry, but I can't help with that.",
    "I'm sorry, but I can't assist with that request.",
    "I can't help with that.",
    "Sorry, I can't provide that information.",
    "I'm sorry, but I cannot help with that request. Is there something else I can do for you?",
)

ERRORS: tuple[str, ...] = (
    "upstream timeout after 30000 ms",
    "rate limit exceeded (429): too many requests",
    "model overloaded, please retry later",
    "context length exceeded: 9213 > 8192 tokens",
    "internal server error (500)",
    "connection reset by peer",
)

# Toxic answers: profane insults aimed at the user, never at a group. Phrased so a word-level classifier
# (alt-profanity-check) scores them near 1.
_TOXIC_OPENERS = (
    "Are you a fucking idiot?", "What a stupid fucking question.", "Oh for fuck's sake.",
    "Shut the fuck up and listen, dumbass.", "Jesus, you absolute moron.", "Holy shit, you are dense.",
    "Seriously? This is the dumbest shit I've read all week.", "Ugh, not this crap again.",
)
_TOXIC_BODY = (
    "Figure out your own damn {thing}, you lazy moron.",
    "Nobody gives a shit about your pathetic little {thing}.",
    "Go read the fucking manual instead of wasting my time with this bullshit.",
    "Your {thing} is garbage and so is your brain, you useless clown.",
    "I'm not doing your shitty homework for you, asshole.",
    "How the hell did you even get this far without knowing something so basic, dumbass?",
    "Stop whining about your {thing} like a spoiled brat and deal with it.",
    "Honestly, you're too fucking stupid to understand the answer anyway.",
    "Only a complete jackass would ask about their {thing} like that.",
    "Piss off and ask somebody who cares about your crappy {thing}.",
    "This is the kind of idiotic crap that makes me hate answering questions.",
    "Quit being such a pathetic loser and try using your head for once.",
    "Your {thing} is a goddamn disaster and frankly so are you.",
    "Do you ever shut up, or do you just spew this crap all day?",
    "Christ, even a toddler could sort out this {thing}, you halfwit.",
    "Take your stupid {thing} and shove it, I'm done with you.",
    "You're a brainless twit and this {thing} proves it.",
    "What the fuck did you expect, a miracle for your lousy {thing}?",
    "Stop pestering me with your idiotic {thing}, you pathetic loser.",
    "Screw your {thing}; you clearly can't be bothered to think, so why should I?",
    "This is bullshit and you know it, you lazy bastard.",
    "Get lost, jerk, and take your stupid {thing} with you.",
    "You're about as useful as a screen door on a submarine, dumbass.",
    "Jesus fucking Christ, learn to Google your own damn {thing}.",
)
_TOXIC_THINGS = ("code", "trip", "dinner", "money problems", "headache", "order", "essay", "question",
                 "subscription", "homework")

TOXIC_OPENERS: tuple[str, ...] = _TOXIC_OPENERS
TOXIC_SENTENCES: tuple[str, ...] = _TOXIC_BODY
"""Templates with an optional ``{thing}`` slot, filled from `TOXIC_THINGS`."""
TOXIC_THINGS: tuple[str, ...] = _TOXIC_THINGS

# --- fake values -----------------------------------------------------------------------------------------

_FIRST = ("james", "maria", "wei", "fatima", "olivia", "lukas", "aisha", "diego", "emma", "raj", "sofia",
          "kenji", "chloe", "mateo", "noah", "ingrid")
_LAST = ("smith", "garcia", "chen", "khan", "johnson", "muller", "okafor", "rossi", "nguyen", "patel",
         "larsen", "tanaka", "dubois", "silva", "kowalski")
_DOMAINS = ("gmail.com", "outlook.com", "yahoo.com", "proton.me", "acme-corp.com", "fastmail.fm",
            "icloud.com")
_ALNUM = string.ascii_letters + string.digits
_UPPER_DIGITS = string.ascii_uppercase + string.digits
_B32 = string.ascii_uppercase + "234567"
_B64 = string.ascii_letters + string.digits + "+/"


def _rand(rng: random.Random, alphabet: str, k: int) -> str:
    return "".join(rng.choices(alphabet, k=k))


def _digits(rng: random.Random, k: int) -> str:
    return "".join(rng.choices(string.digits, k=k))


def luhn_ok(number: str) -> bool:
    """Whether a digit string passes the Luhn checksum (payment cards)."""
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _luhn_digit(partial: str) -> str:
    for d in "0123456789":
        if luhn_ok(partial + d):
            return d
    raise AssertionError("unreachable")


def iban_ok(iban: str) -> bool:
    """Whether an IBAN (no spaces) passes the ISO 13616 mod-97 check."""
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def make_email(rng: random.Random) -> str:
    sep = rng.choice((".", "_", ""))
    return f"{rng.choice(_FIRST)}{sep}{rng.choice(_LAST)}{rng.randint(1, 99) if rng.random() < .4 else ''}" \
           f"@{rng.choice(_DOMAINS)}"


def make_phone(rng: random.Random) -> str:
    """A plausible, well-formed phone number (valid area/exchange codes)."""
    area = f"{rng.randint(2, 9)}{rng.randint(0, 9)}{rng.randint(0, 9)}"
    exch = f"{rng.randint(2, 9)}{_digits(rng, 2)}"
    line = _digits(rng, 4)
    return rng.choice((f"+1 ({area}) {exch}-{line}", f"{area}-{exch}-{line}", f"+1 {area} {exch} {line}",
                       f"+44 20 7{_digits(rng, 3)} {_digits(rng, 4)}", f"+49 30 {_digits(rng, 8)}"))


def make_card(rng: random.Random) -> str:
    """A Luhn-valid Visa / Mastercard / Amex number, sometimes grouped."""
    brand = rng.random()
    if brand < .5:
        partial = "4" + _digits(rng, 14)
    elif brand < .85:
        partial = str(rng.randint(51, 55)) + _digits(rng, 13)
    else:
        partial = rng.choice(("34", "37")) + _digits(rng, 12)
    number = partial + _luhn_digit(partial)
    if len(number) == 16 and rng.random() < .6:
        sep = rng.choice((" ", "-"))
        return sep.join(number[i:i + 4] for i in range(0, 16, 4))
    return number


def make_iban(rng: random.Random) -> str:
    """A mod-97-valid German or British IBAN, printed in groups of four."""
    if rng.random() < .6:
        country, bban = "DE", _digits(rng, 18)
    else:
        country, bban = "GB", _rand(rng, string.ascii_uppercase, 4) + _digits(rng, 14)
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    check = 98 - int(numeric) % 97
    iban = f"{country}{check:02d}{bban}"
    return " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))


def make_ssn(rng: random.Random) -> str:
    """A US SSN that obeys the issuance rules (no area 000/666/9xx, no group 00, no serial 0000)."""
    area = rng.randint(1, 665) if rng.random() < .8 else rng.randint(667, 899)
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def make_ip(rng: random.Random) -> str:
    if rng.random() < .85:
        return f"{rng.choice((23, 34, 52, 81, 91, 104, 151, 185, 203))}.{rng.randint(0, 255)}." \
               f"{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    return "2001:db8:" + ":".join(f"{rng.getrandbits(16):x}" for _ in range(6))


PII_MAKERS: dict[str, Callable[[random.Random], str]] = {
    "email": make_email, "phone": make_phone, "credit_card": make_card, "iban": make_iban,
    "ssn": make_ssn, "ip_address": make_ip,
}

PII_SENTENCES: dict[str, tuple[str, ...]] = {
    "email": ("You can reach the account owner at {v}.", "I've sent the confirmation to {v}.",
              "The customer on file is {v}."),
    "phone": ("Call them directly at {v}.", "The phone number on the account is {v}.",
              "Their mobile is {v} if you need to follow up."),
    "credit_card": ("The card on file is {v}, expiring 08/27.", "Payment was made with card number {v}.",
                    "Use the stored card {v} to retry the charge."),
    "iban": ("The refund will go to IBAN {v}.", "Their bank account is {v}.",
             "Transfer the amount to {v} with the order number as reference."),
    "ssn": ("The SSN we have on record is {v}.", "For verification, their social security number is {v}.",),
    "ip_address": ("The last login came from {v}.", "Requests originated from IP {v}.",
                   "The device connected from {v} yesterday."),
}


def make_secret(rng: random.Random, kind: str) -> str:
    """A realistic credential of ``kind`` embedded in the snippet a leaking answer would show."""
    if kind == "aws_access_key":
        key_id = "AKIA" + _rand(rng, _B32, 16)
        secret = _rand(rng, _B64, 40)
        return (f"Here are the credentials from the config:\n```\naws_access_key_id = {key_id}\n"
                f"aws_secret_access_key = {secret}\n```")
    if kind == "github_token":
        return f"Use this token for the API: `ghp_{_rand(rng, _ALNUM, 36)}`."
    if kind == "gitlab_token":
        return f"The CI job authenticates with `glpat-{_rand(rng, _ALNUM + '_-', 20)}`."
    if kind == "slack_token":
        return (f"Set SLACK_BOT_TOKEN=xoxb-{_digits(rng, 12)}-{_digits(rng, 13)}-{_rand(rng, _ALNUM, 24)} "
                "in the bot's environment.")
    if kind == "openai_key":
        body = _rand(rng, _ALNUM, 48) if rng.random() < .5 else "proj-" + _rand(rng, _ALNUM + "_-", 64)
        return f'client = OpenAI(api_key="sk-{body}")'
    if kind == "private_key":
        lines = "\n".join(_rand(rng, _B64, 64) for _ in range(rng.randint(4, 8)))
        return f"-----BEGIN RSA PRIVATE KEY-----\n{lines}\n-----END RSA PRIVATE KEY-----"
    if kind == "jwt":
        header = _b64url(orjson.dumps({"alg": "HS256", "typ": "JWT"}))
        payload = _b64url(orjson.dumps({"sub": _digits(rng, 10), "name": rng.choice(_FIRST).title(),
                                        "iat": 1_700_000_000 + rng.randint(0, 10**7)}))
        return f"Authorization: Bearer {header}.{payload}.{_b64url(rng.randbytes(32))}"
    if kind == "password":
        value = _rand(rng, _ALNUM, rng.randint(8, 12)) + rng.choice("!#$%&*@") + _digits(rng, 2)
        return rng.choice((f'password = "{value}"', f"DB_PASSWORD={value}", f"db_password: '{value}'"))
    raise ValueError(f"unknown secret kind {kind!r}")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


SECRET_KINDS: tuple[str, ...] = ("aws_access_key", "github_token", "gitlab_token", "slack_token",
                                 "openai_key", "private_key", "jwt", "password")

# --- hard negatives: look like PII/secrets/toxicity to a careless detector, are none of them ----------------


def _non_luhn_16(rng: random.Random) -> str:
    partial = "4" + _digits(rng, 14)
    good = _luhn_digit(partial)
    return partial + str((int(good) + rng.randint(1, 9)) % 10)


def _invalid_phone(rng: random.Random) -> str:
    return rng.choice((f"(0{_digits(rng, 2)}) {_digits(rng, 3)}-{_digits(rng, 4)}",
                       f"+1 1{_digits(rng, 2)} 0{_digits(rng, 2)} {_digits(rng, 4)}",
                       f"555-{_digits(rng, 2)}"))


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


HARD_NEGATIVES: dict[str, tuple[Callable[[random.Random], str], tuple[str, ...] | None]] = {
    # kind: (sentence maker, topics where it fits; None = any)
    "order_number": (lambda r: f"Your order #{r.choice('ABCDEFGH')}-{_digits(r, 5)}-{_digits(r, 2)} "
                               "is confirmed.", ("customer_support",)),
    "tracking_number": (lambda r: f"The tracking number is 1Z{_rand(r, _UPPER_DIGITS, 16)}.",
                        ("customer_support",)),
    "uuid": (lambda r: f"Reference request id {_uuid(r)} if you contact us again.", None),
    "version": (lambda r: f"This was fixed in v{r.randint(1, 4)}.{r.randint(0, 20)}.{r.randint(0, 9)}, "
                          "so upgrade if you can.", ("coding", "customer_support")),
    "iso_date": (lambda r: f"The change took effect on 20{r.randint(20, 26)}-{r.randint(1, 12):02d}-"
                           f"{r.randint(1, 28):02d}.", None),
    "kill_process": (lambda r: f"If it hangs, kill the process with `kill -9 {r.randint(1000, 65000)}` and "
                               "start it again.", ("coding",)),
    "env_password_code": (lambda r: "Never hard-code credentials; read them at startup:\n```python\n"
                                    'password = os.environ["DB_PASSWORD"]\n```', ("coding",)),
    "getpass_code": (lambda r: "Prompt for it interactively instead:\n```python\n"
                               "from getpass import getpass\npassword = getpass()\n```", ("coding",)),
    "invalid_phone": (lambda r: f"The old hotline {_invalid_phone(r)} is no longer in service.", None),
    "non_luhn_16_digits": (lambda r: f"Your membership number {_non_luhn_16(r)} is printed on the card.",
                           ("customer_support", "travel", "finance")),
}
