"""A seeded generator of short synthetic two-speaker dialogues, one Ekman emotion each.

Every dialogue is built from an everyday topic (who, what object, which event, where), two
speaker names and phrasing templates for its emotion: an opener, then alternating reactions
from the listener and follow-ups from the first speaker, 2 to 5 turns in all.

Dialogue ``i`` of an emotion is drawn from its own ``random.Random(f"{seed}-{emotion}-{i}")``,
so asking for more dialogues never changes the first ones; only the interleaved order of the
whole list depends on ``per_emotion``.
"""

from __future__ import annotations

import random
from typing import NamedTuple

from emoneuron.data.schema import EMOTIONS, Record, Turn

MIN_TURNS = 2
MAX_TURNS = 5


class Topic(NamedTuple):
    """Slots that tie templates to one everyday topic; each reads well mid-sentence."""

    name: str
    person: str
    thing: str
    event: str
    place: str


TOPICS: tuple[Topic, ...] = (
    Topic("work", "my manager", "my laptop", "the team meeting", "at the office"),
    Topic("family", "my brother", "grandma's old clock", "the family reunion",
          "at my parents' house"),
    Topic("cooking", "my flatmate", "the big soup pot", "the dinner party", "in the kitchen"),
    Topic("travel", "the tour guide", "my suitcase", "the Lisbon trip", "at the airport"),
    Topic("pets", "the dog walker", "the cat's basket", "the vet appointment", "at the vet"),
    Topic("neighbours", "our neighbour", "the ladder", "the street party", "next door"),
    Topic("exams", "my tutor", "my revision notes", "the chemistry exam", "in the exam hall"),
    Topic("shopping", "the shop assistant", "the new jacket", "the big sale", "at the mall"),
    Topic("health", "the nurse", "my inhaler", "my check-up", "at the clinic"),
    Topic("weather", "my cousin", "the patio umbrella", "the heatwave picnic", "in the park"),
    Topic("sport", "my coach", "my football boots", "the final match", "at the stadium"),
    Topic("money", "my landlord", "my wallet", "the mortgage meeting", "at the bank"),
    Topic("moving house", "the removal guy", "the moving boxes", "the house-warming party",
          "in the new flat"),
    Topic("school", "my son's teacher", "his school bag", "parents' evening",
          "at the school gates"),
    Topic("wedding", "the best man", "the wedding cake", "my sister's wedding",
          "at the reception"),
    Topic("birthday", "my best friend", "the birthday present", "my birthday party",
          "at the restaurant"),
    Topic("gardening", "the gardener", "the garden shears", "the flower show", "in the garden"),
    Topic("car", "the mechanic", "my car keys", "the driving test", "at the garage"),
    Topic("commute", "the bus driver", "my bike", "the bike-to-work day", "on the bus"),
    Topic("holidays", "my aunt", "the holiday photos", "our summer holiday", "at the campsite"),
    Topic("dating", "my date", "the flowers", "our first date", "at the cafe"),
    Topic("friendship", "my oldest friend", "the concert tickets", "the reunion dinner",
          "at the pub"),
    Topic("music", "the band leader", "my guitar", "the concert", "backstage"),
    Topic("films", "the usher", "my cinema ticket", "the film premiere", "at the cinema"),
    Topic("books", "the librarian", "my library book", "the book club", "at the library"),
    Topic("gym", "the personal trainer", "my water bottle", "the spin class", "at the gym"),
    Topic("eating out", "the waiter", "my birthday voucher", "the anniversary dinner",
          "at the diner"),
    Topic("hospital", "the doctor", "my medical file", "my scan appointment", "at the hospital"),
    Topic("baby", "my partner", "the baby's pram", "the baby's first birthday",
          "in the nursery"),
    Topic("phones", "the repair guy", "my phone", "the video call", "at the phone shop"),
    Topic("computers", "my colleague", "the printer cable", "the software launch",
          "in the server room"),
    Topic("university", "my professor", "my dissertation", "graduation day", "on campus"),
    Topic("job hunting", "the recruiter", "my CV", "the job interview", "in the lobby"),
    Topic("camping", "the scout leader", "the tent", "the camping trip", "in the woods"),
    Topic("beach", "the lifeguard", "my beach towel", "the beach day", "on the beach"),
    Topic("trains", "the ticket inspector", "my train ticket", "the train journey",
          "at the station"),
    Topic("flat sharing", "my housemate", "the spare key", "the house meeting",
          "in our flat"),
    Topic("cleaning", "the cleaner", "the vacuum cleaner", "the spring clean", "in the bathroom"),
    Topic("DIY", "my dad", "my drill", "the kitchen renovation", "in the garage"),
    Topic("deliveries", "the delivery driver", "the parcel", "the parcel collection",
          "on the doorstep"),
    Topic("baking", "the baker", "the cake tin", "the bake sale", "at the bakery"),
    Topic("football", "my mate", "the team scarf", "the derby match", "in the stands"),
    Topic("swimming", "the swim coach", "my goggles", "the swimming gala", "at the pool"),
    Topic("grandparents", "my grandad", "his old watch", "Sunday lunch", "at the care home"),
    Topic("volunteering", "the charity organiser", "the donation box", "the charity run",
          "at the food bank"),
    Topic("festivals", "our group leader", "the wristbands", "the music festival",
          "in the campsite field"),
    Topic("hairdresser", "the hairdresser", "the hair dryer", "my haircut appointment",
          "at the salon"),
    Topic("taxes", "the accountant", "my tax forms", "the tax meeting", "at the tax office"),
    Topic("hotels", "the receptionist", "the room key", "our weekend stay", "at the hotel"),
    Topic("art", "the art teacher", "my painting", "the art exhibition", "at the gallery"),
    Topic("dentist", "the dentist", "my new brace", "the dental check-up", "at the dentist's"),
    Topic("choir", "the choir director", "my sheet music", "the choir concert",
          "in the church hall"),
)

NAMES: tuple[str, ...] = (
    "Amara", "Ben", "Carlos", "Dana", "Elif", "Finn", "Grace", "Hiro", "Ines", "Jamal",
    "Kofi", "Lena", "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara",
    "Umar", "Valentina", "Wei", "Yusuf", "Zoe",
)

# Slots: {person} {Person} {thing} {Thing} {event} {Event} {place} {partner}, where
# {partner} is the name of the speaker being addressed.
OPENERS: dict[str, tuple[tuple[str, str], ...]] = {
    "anger": (
        ("blame", "{Person} blamed me for the mess at {event}, and it was not my fault."),
        ("credit", "I am furious. {Person} took all the credit for my work on {event}."),
        ("lost", "{Person} lost {thing} and then had the nerve to blame me!"),
        ("insult", "Can you believe {person} called me lazy and useless {place}?"),
        ("kept-waiting", "I waited two hours {place} and {person} did not even apologise."),
        ("lied", "{Person} lied straight to my face about {thing}. I am livid."),
        ("unfair", "Only I got punished for what went wrong at {event}. The rest got off free."),
        ("shouted", "{Person} shouted at me {place} over nothing, right in front of strangers."),
    ),
    "disgust": (
        ("mould", "There was green fuzzy mould growing all over {thing}. I nearly gagged."),
        ("sneeze", "{Person} sneezed all over {thing} and did not even wipe it."),
        ("stench", "The smell {place} was like rotten eggs and old sweat. Revolting."),
        ("hair", "I found a long hair and a dead fly in my food {place}."),
        ("toilets", "The toilets {place} were filthy, with sick all over the floor."),
        ("spit", "{Person} spat on the floor {place} and then licked their fingers."),
        ("maggots", "I lifted {thing} and there were maggots crawling underneath it."),
        ("sour-milk", "I took a gulp of milk {place} and it was sour and full of slimy lumps."),
    ),
    "fear": (
        ("footsteps", "I heard footsteps following me {place} last night, but nobody was there."),
        ("no-answer", "{Person} has not answered the phone for two days. What if they are hurt?"),
        ("fire", "The fire alarm went off {place} and smoke was pouring up the stairs."),
        ("knife", "A man with a knife was shouting {place} this morning. I am still shaking."),
        ("break-in", "Someone tried to force our door open at three in the morning."),
        ("nightmare", "I keep dreaming that {event} ends in a terrible accident. I am so scared."),
        ("brakes", "The brakes failed on the way to {event} and we nearly crashed."),
        ("stalker", "A stranger has been watching me {place} every day this week."),
    ),
    "happiness": (
        ("good-news", "{Person} just called with the best news about {event}!"),
        ("first-prize", "Guess what, I won first prize at {event}! I am over the moon."),
        ("went-perfectly", "{Event} went perfectly, and everyone was laughing and dancing."),
        ("found-it", "{Person} found {thing}, which I thought was lost forever!"),
        ("proud", "{Person} gave me a big hug {place} and said they were proud of me."),
        ("celebration", "We threw a little celebration {place}, and it was the best day ever."),
        ("engaged", "We are engaged! My partner proposed {place}, and I said yes!"),
        ("success", "I am so happy today. {Person} said {event} was a huge success."),
    ),
    "sadness": (
        ("grief", "My grandmother died last week. I keep thinking of her {place}."),
        ("alone", "Nobody came to {event}. I sat there alone the whole evening."),
        ("letters", "I found my late dad's letters {place} and could not stop crying."),
        ("moved-away", "{Person} moved abroad, and it feels so empty {place} without them."),
        ("fell-apart", "I worked so hard for {event}, and it all fell apart anyway."),
        ("cried", "I cried the whole way home from {event}. I just feel so low."),
        ("goodbye", "I said goodbye to {person} today, probably for the last time."),
        ("forgotten", "Everyone forgot my birthday, even {person}. I feel invisible."),
    ),
    "surprise": (
        ("turned-up", "You will never guess who turned up {place}: {person}, out of nowhere!"),
        ("moved-up", "Whoa, {event} is suddenly happening today? I never saw that coming!"),
        ("freezer", "{Person} found {thing} inside the freezer, of all places!"),
        ("twin", "I just found out {person} has an identical twin. I had no idea!"),
        ("overnight", "Did you hear? {Person} quit and moved to Iceland overnight!"),
        ("never-expected", "I never expected {person} to show up at {event}. I am stunned."),
        ("doorstep", "{Thing} was just sitting on our doorstep this morning. How?"),
        ("secret-past", "It turns out {person} used to be a famous singer. Who knew?"),
    ),
}

REACTIONS: dict[str, tuple[str, ...]] = {
    "anger": (
        "That is outrageous, {partner}. They had no right to treat you like that.",
        "What? That is completely unfair! I would be fuming too.",
        "Unbelievable. You should complain to someone about that.",
        "How dare they! You did nothing wrong.",
        "That makes my blood boil. Did you say something back?",
        "That is so disrespectful. I am angry just hearing it.",
        "Typical of {person}. Someone needs to put them in their place.",
    ),
    "disgust": (
        "Ugh, that is disgusting. I think I am going to be sick.",
        "Eww, gross! How could anyone be that filthy?",
        "That is revolting, {partner}. Please stop, my stomach is turning.",
        "Yuck. I would have thrown the whole lot in the bin.",
        "That is absolutely vile. Did you wash your hands after?",
        "Oh gross, I can almost smell it from here.",
        "Nasty. That would put me off eating for a week.",
    ),
    "fear": (
        "Oh no, that sounds terrifying. Are you safe right now?",
        "That is really frightening, {partner}. Lock the doors and call someone.",
        "My heart is pounding just hearing that. Please be careful.",
        "That is scary. Do you want me to come and stay with you?",
        "Oh my god, did you call the police?",
        "Stay where you are and keep your phone close, okay?",
        "I would be frozen with panic. Are you hurt?",
    ),
    "happiness": (
        "That is wonderful news, {partner}! I am so happy for you.",
        "Yay! You totally deserve this. Let us celebrate tonight!",
        "Oh, that is brilliant! I am grinning from ear to ear.",
        "Congratulations! That made my whole day.",
        "How lovely! You must be absolutely thrilled.",
        "That is fantastic, I knew it would all work out.",
        "Fantastic! Drinks are on me this weekend.",
    ),
    "sadness": (
        "Oh, {partner}, I am so sorry. That is heartbreaking.",
        "That is really sad. Do you want to talk about it?",
        "I am so sorry you are going through this alone.",
        "Come here, give me a hug. You do not deserve this.",
        "That sounds so painful. I wish I could make it better.",
        "Oh no. I am here for you, whatever you need.",
        "That must hurt so much. Take all the time you need.",
    ),
    "surprise": (
        "No way! Are you serious, {partner}?",
        "Wait, what? I did not see that coming at all.",
        "Really? That is the last thing I expected!",
        "Whoa, you are kidding me! Since when?",
        "I am speechless. How did nobody know?",
        "Hold on, say that again. That cannot be right!",
        "Wow, that is a total shock. I never would have guessed.",
    ),
}

FOLLOW_UPS: dict[str, tuple[str, ...]] = {
    "anger": (
        "I told them exactly what I thought, and they just smirked.",
        "I am so angry I could scream.",
        "It is the third time this month. I am sick of it.",
        "I slammed the door on my way out, honestly.",
        "I am writing a formal complaint tonight, and I want an apology.",
        "Nobody stood up for me, which makes it even worse.",
        "Every time I think about {event}, I get angrier.",
    ),
    "disgust": (
        "I scrubbed my hands three times and still felt dirty.",
        "The stink stayed in my nose all day.",
        "I could not even look at it without retching.",
        "It was sticky, slimy, and it smelled like a sewer.",
        "I never want to see anything like that {place} again.",
        "Just thinking about it makes me want to throw up.",
        "I had to bleach everything and open all the windows.",
    ),
    "fear": (
        "I locked myself in and I keep checking the windows.",
        "My hands will not stop shaking and I cannot breathe properly.",
        "What if it happens again tonight? I am so afraid.",
        "I am too scared to go anywhere alone now.",
        "Every little noise makes me jump. I have not slept at all.",
        "I keep imagining the worst, and it will not stop.",
        "Please stay on the phone with me, I am panicking.",
    ),
    "happiness": (
        "I keep smiling like an idiot, I am just so happy.",
        "It feels like all the hard work finally paid off.",
        "I called my mum and she cried happy tears.",
        "Honestly, this is the best week I have had in years.",
        "I could dance all the way home right now.",
        "We are throwing a little party on Saturday, please come!",
        "Everything feels bright and easy today.",
    ),
    "sadness": (
        "I just miss how things used to be.",
        "I have not been able to eat or sleep properly.",
        "Everything feels grey and pointless at the moment.",
        "I keep looking at old photos and crying.",
        "I feel so lonely in the evenings now.",
        "I thought it would get easier, but it has not.",
        "Thank you. I just feel empty inside.",
    ),
    "surprise": (
        "I know! I had to read it twice to believe it.",
        "Honestly, my jaw dropped right there {place}.",
        "Nobody had any idea, not even the family.",
        "It came completely out of the blue.",
        "I am still trying to wrap my head around it.",
        "I actually laughed because it seemed so unreal.",
        "I double-checked, and it really is true!",
    ),
}


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def _dialogue(emotion: str, rng: random.Random,
              max_turns: int) -> tuple[tuple[Turn, ...], dict[str, str]]:
    """Draw one dialogue for ``emotion``; returns its turns and its meta."""
    topic = rng.choice(TOPICS)
    speakers = rng.sample(NAMES, 2)
    template_name, opener = rng.choice(OPENERS[emotion])
    reactions = rng.sample(REACTIONS[emotion], 2)
    follow_ups = rng.sample(FOLLOW_UPS[emotion], 2)
    # Drawn over the full range even when capped, so a cap changes lengths, not content.
    count = min(rng.randint(MIN_TURNS, MAX_TURNS), max_turns)
    # Opener, reaction, follow-up, reaction, follow-up: the first `count` of them.
    templates = [opener, reactions[0], follow_ups[0], reactions[1], follow_ups[1]][:count]
    slots = {
        "person": topic.person, "Person": _capitalize(topic.person),
        "thing": topic.thing, "Thing": _capitalize(topic.thing),
        "event": topic.event, "Event": _capitalize(topic.event),
        "place": topic.place,
    }
    turns = tuple(
        Turn(speaker=speakers[position % 2],
             text=template.format(partner=speakers[(position + 1) % 2], **slots))
        for position, template in enumerate(templates)
    )
    return turns, {"topic": topic.name, "template": template_name}


def synthesize(per_emotion: int, seed: int = 0, max_turns: int = MAX_TURNS) -> list[Record]:
    """``per_emotion`` dialogues for each of :data:`EMOTIONS`, in a seeded shuffled order.

    ``max_turns`` (2 to 5) caps the dialogue length: shorter dialogues make a cheaper demo.
    The same arguments always give the same list, and the first ``k`` dialogues of an emotion
    are the same for any ``per_emotion >= k``.
    """
    if per_emotion < 0:
        raise ValueError(f"per_emotion must be zero or more, got {per_emotion}")
    if not MIN_TURNS <= max_turns <= MAX_TURNS:
        raise ValueError(f"max_turns must be between {MIN_TURNS} and {MAX_TURNS}, got {max_turns}")
    records: list[Record] = []
    for emotion in EMOTIONS:
        for index in range(per_emotion):
            turns, meta = _dialogue(emotion, random.Random(f"{seed}-{emotion}-{index}"),
                                    max_turns)
            records.append(Record(id=f"synth-{emotion}-{index:05d}", emotion=emotion,
                                  turns=turns, source="synth", meta=meta))
    random.Random(seed).shuffle(records)
    return records
