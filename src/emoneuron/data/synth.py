"""A seeded generator of short synthetic two-speaker dialogues, one Ekman emotion each.

Every dialogue is built from an everyday topic (who, what object, which event, where, and
when), two speaker names and phrasing templates for its emotion: an opener, then alternating
reactions from the listener and follow-ups from the first speaker, 2 to 5 turns in all, with
optional intros, discourse markers, questions and afterthoughts around them.

Template families. Each emotion's openers, reactions and follow-ups are dealt into
:data:`FAMILIES_PER_EMOTION` (8) fixed families, by their place in the pools alone (the
keyword-free ones first, so that each family has its share of them), the same for every seed;
a dialogue draws all of its emotion phrasing from one family, which ``meta["template"]``
names (``anger-3``; the opener's own name is ``meta["opener"]``, the reaction and follow-up
templates the turns show are ``meta["reactions"]`` and ``meta["follow_ups"]``). A split that
keeps each ``meta["template"]`` on one side (:func:`emoneuron.data.split.split`) thereby
holds out every phrasing template of its evaluation dialogues, not only their opener's name,
and needs no knowledge of this generator. Families rather than one group per opener: a
dialogue combines an opener with reactions and follow-ups, so groups by opener alone would
share reactions across the split, and grouping by every template a dialogue touches would
chain almost all dialogues of an emotion into one group. Eight families leave each at least
2 reactions and 2 follow-ups per emotion in the keyword-free mode (tested), and enough groups
for a split to reach 30 or 40% held out to within a dialogue at the demo and study sizes.
Intros, discourse markers, questions, afterthoughts, topics, names and times carry no emotion
and are shared by every family and both sides of a split.

The keyword-free mode uses only the phrasing without any word of the emotion lexicon
(:mod:`emoneuron.data.lexicon`). Variety, as distinct word 4-grams in 1,000 dialogues
(seed 0): 7,845 before the keyword-free mode and the added phrasing, 17,594 after (keyword-free
mode: 17,130), 17,689 with the template families (keyword-free mode: 16,755); see
tests/data/test_synth.py.

Dialogue ``i`` of an emotion is drawn from its own ``random.Random(f"{seed}-{emotion}-{i}")``,
so asking for more dialogues never changes the first ones; only the interleaved order of the
whole list depends on ``per_emotion``.
"""

from __future__ import annotations

import random
from typing import NamedTuple

from emoneuron.data.lexicon import find_emotion_words
from emoneuron.data.schema import EMOTIONS, Record, Turn
from emoneuron.data.templates import TEMPLATE
from emoneuron.errors import UserError
from emoneuron.options import check_seeds

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
    "Umar", "Valentina", "Wei", "Yusuf", "Zoe", "Aisha", "Bruno", "Chloe", "Dmitri", "Esther",
    "Felix", "Gabriela", "Hamid", "Isla", "Jonas", "Kemal", "Leila", "Marco", "Noor", "Oscar",
    "Paulo", "Rania", "Sami", "Thea", "Ulla", "Viktor", "Yara", "Zain", "Mei", "Tomas",
)

# When the opener's event happened ({when}); none of these is an emotion word.
WHEN: tuple[str, ...] = (
    "yesterday", "this morning", "last night", "on Monday", "on Friday evening", "an hour ago",
    "at lunchtime", "over the weekend", "earlier today", "last week", "on Sunday afternoon",
    "just before midnight",
)

# People who can turn up in any topic, half of the time instead of the topic's own person.
PEOPLE: tuple[str, ...] = (
    "my neighbour", "a colleague of mine", "my sister-in-law", "my flatmate's boyfriend",
    "my uncle", "my old schoolfriend", "the new intern", "my stepdad", "my cousin's wife",
    "our landlady", "my ex", "the woman from upstairs", "my mum", "my nephew", "my godmother",
    "the lad from the corner shop", "my team leader", "my piano teacher", "my brother-in-law",
    "a friend of a friend", "my granddad", "the caretaker", "my daughter", "my son",
    "my flatmate", "our babysitter", "the postman", "my running buddy", "my old boss",
    "my aunt's partner", "the man next door", "my niece", "my godson", "my physio",
    "the night porter", "my yoga teacher", "our plumber", "my twin sister", "my sister",
    "my best mate",
)

# Short sentences that may introduce the first turn, when it stays within 20 words.
INTROS: tuple[str, ...] = (
    "Guess what happened {when}.", "You will not believe this, {partner}.",
    "Can I tell you something?", "Hey {partner}, got a minute?", "So, {when}...",
    "I have to tell someone.", "{Partner}, listen to this.", "Right, so {when}.",
    "Sit down for this one.", "Have you got a second, {partner}?",
)

# Questions that may close a reaction, when it stays within 20 words.
QUESTIONS: tuple[str, ...] = (
    "Was this {place}?", "And this was {when}?", "What did {person} say?",
    "Who else was at {event}?", "Was anyone with you?", "When was this, exactly?",
    "Does anyone else know?", "How are you holding up, {partner}?",
)

# Afterthoughts that may close a follow-up, when it stays within 20 words.
AFTERTHOUGHTS: tuple[str, ...] = (
    "It all happened {place}.", "This was {when}, by the way.", "{Person} was there too.",
    "I told {person} about it.", "Anyway, that is where things are.",
    "Sorry, I know it is a lot.", "And that was only {when}.", "You know what I mean, {partner}?",
)

# Openings of a reply; the first letter of what follows is lowered to match.
PREFIXES: tuple[str, ...] = (
    "Honestly,", "Oh,", "Well,", "Listen,", "Look,", "Seriously,", "Right,", "I mean,",
    "You know,", "So,", "Okay,", "Hmm,",
)

# Slots: {person} {Person} {thing} {Thing} {event} {Event} {place} {when} {partner}, where
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
        ("keyed", "Someone keyed my car {place} {when} and just drove off laughing."),
        ("read-messages", "{Person} read my private messages {when} and then lectured me."),
        ("cancelled", "{Person} cancelled {event} at the last minute, for the fourth time."),
        ("queue-jump", "A man pushed in front of me {place} {when} and told me to wait."),
        ("broke-promise", "{Person} swore they would fix {thing}, and never even looked at it."),
        ("mocked", "{Person} mocked my accent {place} while everyone else laughed along."),
        ("stolen-idea", "{Person} presented my idea at {event} as if it were their own."),
        ("charged-twice", "They charged me twice for {thing} and then hung up on me {when}."),
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
        ("bin-slime", "The bin {place} leaked brown slime all over the floor {when}."),
        ("toenails", "{Person} clipped their toenails at {event}, right next to the food."),
        ("licked", "A stranger licked {thing} and then put it back on the shelf."),
        ("furry-fridge", "I opened the fridge {place} and something had gone black and furry."),
        ("pus", "{Person} showed me an infected cut full of yellow pus {when}."),
        ("rat", "A rat ran across the table {place} and straight over the bread."),
        ("old-egg", "The plates {place} still had old egg stuck to them {when}."),
        ("drain", "I pulled a clump of slimy hair out of the drain {when}."),
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
        ("lump", "The doctor found a lump {when} and wants more tests."),
        ("turbulence", "The plane dropped suddenly on the way to {event} and people screamed."),
        ("lost-child", "I lost sight of my little nephew {place} for ten whole minutes."),
        ("note", "Someone left a note on my door {when} saying they know where I live."),
        ("flood", "The water was rising fast {place} and the road out was blocked."),
        ("figure", "There was a figure standing in our garden at midnight, just staring."),
        ("lift", "The lift got stuck between floors {when} and the lights went out."),
        ("results", "{Person} rang to say my test results must be discussed in person."),
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
        ("promotion", "{Person} called me in {when} and offered me the promotion!"),
        ("godparent", "My sister is having a baby, and she wants me to be the godparent!"),
        ("paid-off", "I paid off the last of my loan {when}. Completely free at last!"),
        ("visit", "My best friend flew in from Canada just for {event}!"),
        ("top-marks", "I passed! {Person} just told me I got top marks."),
        ("roses", "The roses I planted finally bloomed {when}, and they look perfect."),
        ("puppy", "We picked up our new puppy {when}, and he fell asleep in my lap."),
        ("got-the-job", "I got the job! They rang me {place} an hour after the interview."),
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
        ("old-dog", "We had to put our old dog down {when}. The house is so quiet."),
        ("ended", "{Person} ended things with me {when}, after six years together."),
        ("rejected", "I did not get into the course. I worked towards it for two years."),
        ("packed-room", "I packed up Mum's room at the care home {when}."),
        ("voicemail", "I found her last voicemail {place} and played it over and over."),
        ("no-reply", "{Person} stopped answering my messages, and I do not know why."),
        ("house-sold", "We sold the house I grew up in. Strangers live there now."),
        ("not-coming", "{Person} cannot come home for {event} this year, again."),
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
        ("lottery", "{Person} won the lottery {when} and kept it quiet for a month!"),
        ("secret-wedding", "{Person} got married {when} in secret, and nobody was invited!"),
        ("old-friend", "I bumped into my childhood best friend {place}, after twenty years!"),
        ("hidden-room", "We found a hidden room behind the wardrobe {when}."),
        ("moved-date", "They moved {event} to tomorrow, without any warning at all."),
        ("snow", "It snowed {place} {when}, in the middle of June!"),
        ("lookalike", "A stranger {place} looked exactly like me, down to the freckles."),
        ("returned", "{Thing} turned up {when}, five years after it went missing!"),
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
        "Seriously? After everything you have done for them, {partner}?",
        "That is not on. I would have told them exactly where to go.",
        "Who do they think they are? You deserve an apology.",
        "I would want to shout at them. That is just wrong.",
        "They cannot get away with that. Report it first thing tomorrow.",
        "Unacceptable, {partner}. Did anyone back you up?",
        "My jaw is clenched just listening to this.",
        "That is so rude. I would have walked out on the spot.",
        "That is out of order, {partner}. Who do they think they are?",
        "I would have given them a piece of my mind right there.",
        "They owe you a proper apology, and in writing.",
        "No, that is not acceptable. Put it in writing tomorrow.",
        "Right, I am ringing them myself. That is totally out of line.",
    ),
    "disgust": (
        "Ugh, that is disgusting. I think I am going to be sick.",
        "Eww, gross! How could anyone be that filthy?",
        "That is revolting, {partner}. Please stop, my stomach is turning.",
        "Yuck. I would have thrown the whole lot in the bin.",
        "That is absolutely vile. Did you wash your hands after?",
        "Oh gross, I can almost smell it from here.",
        "Nasty. That would put me off eating for a week.",
        "Eugh, no. I did not need that picture in my head, {partner}.",
        "Stop, my stomach just flipped over.",
        "Bleugh. I would have walked straight out of there.",
        "Please tell me you threw it all away, {partner}.",
        "That is filthy. I am never eating there again.",
        "I can feel my lunch coming back up.",
        "Oh, that is foul. Who does that?",
        "My skin is crawling just hearing about it.",
        "Stop, stop. I can practically taste it, {partner}.",
        "That is grim. Please tell me you burned it.",
        "Oh, nasty. I just lost my appetite completely.",
        "No, no, no. I am going to need a shower after hearing that.",
        "Tell me you at least wore gloves, {partner}.",
        "Blegh. My throat just closed up.",
        "Ugh, that makes my skin itch. Bin the lot.",
        "That is rank. I would have run out of there.",
        "Please, no more details. I am eating.",
    ),
    "fear": (
        "Oh no, that sounds terrifying. Are you safe right now?",
        "That is really frightening, {partner}. Lock the doors and call someone.",
        "My heart is pounding just hearing that. Please be careful.",
        "That is scary. Do you want me to come and stay with you?",
        "Oh my god, did you call the police?",
        "Stay where you are and keep your phone close, okay?",
        "I would be frozen with panic. Are you hurt?",
        "Where are you right now, {partner}? Is the door locked?",
        "Stay on the line. I am coming over straight away.",
        "My stomach just dropped. Is everyone all right?",
        "Do not go back there alone, please.",
        "Breathe slowly with me, {partner}. In and out.",
        "Have you told anyone else? You should not be on your own.",
        "Keep the lights on and call me every hour, okay?",
        "That gives me chills. What are you going to do?",
        "Are the doors locked? Tell me you are somewhere safe.",
        "Do not open the door to anyone tonight, {partner}.",
        "Text me the second you get home, please.",
        "I am coming to pick you up. Stay somewhere with people.",
        "Call the emergency number if you hear anything again.",
        "My hands went cold just reading your message.",
    ),
    "happiness": (
        "That is wonderful news, {partner}! I am so happy for you.",
        "Yay! You totally deserve this. Let us celebrate tonight!",
        "Oh, that is brilliant! I am grinning from ear to ear.",
        "Congratulations! That made my whole day.",
        "How lovely! You must be absolutely thrilled.",
        "That is fantastic, I knew it would all work out.",
        "Fantastic! Drinks are on me this weekend.",
        "Yes! That is the best thing I have heard all week, {partner}.",
        "I knew you could do it. We are going out tonight!",
        "Oh, well done, {partner}! You have earned this.",
        "Amazing news. Let me buy you dinner.",
        "That is lovely. I am beaming for you.",
        "Brilliant! Tell me everything, right from the start.",
        "What a day! Come here, give me a high five.",
        "You did it! I am going to tell everyone I know.",
        "Woohoo! I am buying the cake, {partner}.",
        "Yes, yes, yes! Tell me absolutely everything.",
        "That is the best news all year. Come here!",
        "Incredible! We are celebrating this weekend, no excuses.",
        "Oh, {partner}, I could hug you right now!",
    ),
    "sadness": (
        "Oh, {partner}, I am so sorry. That is heartbreaking.",
        "That is really sad. Do you want to talk about it?",
        "I am so sorry you are going through this alone.",
        "Come here, give me a hug. You do not deserve this.",
        "That sounds so painful. I wish I could make it better.",
        "Oh no. I am here for you, whatever you need.",
        "That must hurt so much. Take all the time you need.",
        "Oh, {partner}. Come here. I am right here with you.",
        "That must be so hard. Do you want some company tonight?",
        "I am sorry. That is a huge loss.",
        "Take your time. There is no rush to feel better.",
        "I wish there was something I could say to fix it.",
        "Let me make you a cup of tea and we can just sit.",
        "That is a lot to carry on your own, {partner}.",
        "I remember how much that meant to you.",
        "I am here, {partner}. Take as long as you need.",
        "Come and stay with me this weekend. You should not be alone.",
        "Oh, love. I will bring soup round tonight.",
        "That is such a loss. I am thinking of you.",
    ),
    "surprise": (
        "No way! Are you serious, {partner}?",
        "Wait, what? I did not see that coming at all.",
        "Really? That is the last thing I expected!",
        "Whoa, you are kidding me! Since when?",
        "I am speechless. How did nobody know?",
        "Hold on, say that again. That cannot be right!",
        "Wow, that is a total shock. I never would have guessed.",
        "Hang on, what? Say that again, {partner}.",
        "You are joking! Since when?",
        "No! I would never have guessed that in a million years.",
        "What? How did nobody notice?",
        "Get out of here! Really?",
        "Hold on, are you being serious right now, {partner}?",
        "Well, I never! How on earth did that happen?",
        "Back up a second. That actually happened?",
        "Hang on, since when? Nobody told me anything!",
        "Seriously? I need to sit down for this one, {partner}.",
        "What on earth? That is the last thing I would have guessed.",
        "Shut up! You are making this up, {partner}.",
        "Wait, really? How did that even happen?",
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
        "My face went hot and I had to walk away before I said something.",
        "I gripped the table so hard my knuckles went white.",
        "I have not spoken to them since, and I will not.",
        "I keep replaying it and clenching my fists.",
        "Next time I am not staying quiet, I promise you that.",
        "I banged my fist on the counter and left.",
        "I demanded to see the manager, and I am still waiting.",
        "They will hear from my lawyer if this happens again.",
        "I told them I would be taking it further, and I meant it.",
        "I marched straight back in and demanded my money back.",
        "I was shaking the whole drive home, I was that wound up.",
        "I refuse to let them treat me like that ever again.",
        "I wrote them a very long email and copied in their boss.",
    ),
    "disgust": (
        "I scrubbed my hands three times and still felt dirty.",
        "The stink stayed in my nose all day.",
        "I could not even look at it without retching.",
        "It was sticky, slimy, and it smelled like a sewer.",
        "I never want to see anything like that {place} again.",
        "Just thinking about it makes me want to throw up.",
        "I had to bleach everything and open all the windows.",
        "I had to hold my nose and breathe through my mouth.",
        "I gagged twice just cleaning it up.",
        "I threw away the gloves, the cloth and the bucket.",
        "The smell was sour and sweet at the same time.",
        "I could not eat a thing for the rest of the day.",
        "I washed my hands until they were raw.",
        "Even the dog would not go near it.",
        "I still get a sour taste in my mouth thinking about it.",
        "I threw the whole thing in the outside bin and ran.",
        "I sprayed half a can of disinfectant and still gagged.",
    ),
    "fear": (
        "I locked myself in and I keep checking the windows.",
        "My hands will not stop shaking and I cannot breathe properly.",
        "What if it happens again tonight? I am so afraid.",
        "I am too scared to go anywhere alone now.",
        "Every little noise makes me jump. I have not slept at all.",
        "I keep imagining the worst, and it will not stop.",
        "Please stay on the phone with me, I am panicking.",
        "I have pushed a chair against the door.",
        "My heart is still racing and my hands are cold.",
        "I jump every time my phone rings.",
        "I keep listening for that sound again.",
        "I could not stop shaking all the way home.",
        "I slept with every light on last night.",
        "What if they come back? I cannot stop thinking it.",
        "I have not closed my eyes since it happened.",
        "I sat in the car with the doors locked for an hour.",
        "I keep checking the locks every ten minutes.",
        "I have not been able to stop shaking since.",
        "I asked my neighbour to walk me to the door.",
        "I lay awake listening to every creak in the house.",
    ),
    "happiness": (
        "I keep smiling like an idiot, I am just so happy.",
        "It feels like all the hard work finally paid off.",
        "I called my mum and she cried happy tears.",
        "Honestly, this is the best week I have had in years.",
        "I could dance all the way home right now.",
        "We are throwing a little party on Saturday, please come!",
        "Everything feels bright and easy today.",
        "I have been smiling since I woke up.",
        "I sang all the way home in the car.",
        "I rang everyone I know, even my old teacher.",
        "Honestly, I could not ask for anything more.",
        "We are having cake and balloons on Saturday.",
        "I feel like I could run a marathon right now.",
        "Everything just clicked into place at last.",
        "I keep laughing for no reason at all.",
        "I have been grinning all day and I cannot stop.",
        "I bought a bottle of fizz on the way home.",
        "I rang my gran and she cheered down the phone.",
        "Everyone at work clapped when I told them.",
    ),
    "sadness": (
        "I just miss how things used to be.",
        "I have not been able to eat or sleep properly.",
        "Everything feels grey and pointless at the moment.",
        "I keep looking at old photos and crying.",
        "I feel so lonely in the evenings now.",
        "I thought it would get easier, but it has not.",
        "Thank you. I just feel empty inside.",
        "I keep setting two plates out of habit.",
        "The evenings are the worst part.",
        "I cried in the shower so nobody would hear.",
        "Nothing tastes of anything at the moment.",
        "I just want to stay in bed all day.",
        "I keep thinking I will hear the door and it will be them.",
        "I do not really see the point of anything right now.",
        "Thank you for listening. It helps a little.",
        "I sat in the car and could not make myself go inside.",
        "The house feels so quiet without them.",
        "I keep picking up my phone to call, then remembering.",
    ),
    "surprise": (
        "I know! I had to read it twice to believe it.",
        "Honestly, my jaw dropped right there {place}.",
        "Nobody had any idea, not even the family.",
        "It came completely out of the blue.",
        "I am still trying to wrap my head around it.",
        "I actually laughed because it seemed so unreal.",
        "I double-checked, and it really is true!",
        "I had to sit down when I heard.",
        "I rubbed my eyes and looked again, twice.",
        "Nobody had the faintest idea, not even {person}.",
        "My mouth just fell open.",
        "I still cannot quite take it in.",
        "I laughed out loud because it made no sense.",
        "Apparently it had been planned for months.",
        "Out of nowhere, just like that, {place}.",
        "I had to read the message three times.",
        "My mouth was hanging open for a good minute.",
        "Nobody saw it coming, not even the people closest to it.",
    ),
}


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


def _after_prefix(prefix: str, text: str) -> str:
    """``text`` continuing ``prefix``: its first letter lowered unless it is "I" or a name."""
    first = text.split(" ", 1)[0]
    if first[-1] in ",!?" or first == "Oh":  # it opens with a marker ("Honestly,", "Yay!")
        return text
    keep = first.rstrip(",.!?") in NAMES or first == "I" or first.startswith("I'")
    return f"{prefix} {text if keep else text[:1].lower() + text[1:]}"


def _lexicon_free(texts: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(text for text in texts if not find_emotion_words(text))


KEYWORD_FREE_PREFIXES = _lexicon_free(PREFIXES)

FAMILIES_PER_EMOTION = 8


class Family(NamedTuple):
    """Phrasing templates of one emotion that a dialogue draws all of its phrasing from."""

    name: str
    openers: tuple[tuple[str, str], ...]
    reactions: tuple[str, ...]
    follow_ups: tuple[str, ...]


def _deal(texts: tuple[str, ...]) -> list[list[int]]:
    """Pool indices per family: the keyword-free texts dealt round-robin first, then the rest,
    so that every family holds its share of both (the keyword-free mode sees only the first)."""
    order = sorted(range(len(texts)), key=lambda index: bool(find_emotion_words(texts[index])))
    return [sorted(order[family::FAMILIES_PER_EMOTION])
            for family in range(FAMILIES_PER_EMOTION)]


def _families(emotion: str) -> tuple[Family, ...]:
    openers, reactions, follow_ups = OPENERS[emotion], REACTIONS[emotion], FOLLOW_UPS[emotion]
    dealt = zip(_deal(tuple(text for _, text in openers)), _deal(reactions), _deal(follow_ups),
                strict=True)
    return tuple(Family(f"{emotion}-{number}", tuple(openers[i] for i in opener_indices),
                        tuple(reactions[i] for i in reaction_indices),
                        tuple(follow_ups[i] for i in follow_up_indices))
                 for number, (opener_indices, reaction_indices, follow_up_indices)
                 in enumerate(dealt))


def _keyword_free(family: Family) -> Family:
    return family._replace(
        openers=tuple(opener for opener in family.openers if not find_emotion_words(opener[1])),
        reactions=_lexicon_free(family.reactions), follow_ups=_lexicon_free(family.follow_ups))


# The keyword-free mode draws only from phrasing without any lexicon word of any emotion; the
# slot values (topics, names, times, prefixes) contain none either (tested).
FAMILIES = {emotion: _families(emotion) for emotion in EMOTIONS}
KEYWORD_FREE_FAMILIES = {emotion: tuple(map(_keyword_free, families))
                         for emotion, families in FAMILIES.items()}


def _dialogue(emotion: str, rng: random.Random, max_turns: int,
              keyword_free: bool
              ) -> tuple[tuple[Turn, ...], dict[str, str | list[str]]]:
    """Draw one dialogue for ``emotion``; returns its turns and its meta."""
    family = rng.choice((KEYWORD_FREE_FAMILIES if keyword_free else FAMILIES)[emotion])
    prefixes = KEYWORD_FREE_PREFIXES if keyword_free else PREFIXES
    topic = rng.choice(TOPICS)
    person = rng.choice(PEOPLE) if rng.random() < 0.5 else topic.person
    speakers = rng.sample(NAMES, 2)
    opener_name, opener = rng.choice(family.openers)
    reactions = rng.sample(family.reactions, 2)
    follow_ups = rng.sample(family.follow_ups, 2)
    # Drawn over the full range even when capped, so a cap changes lengths, not content.
    count = min(rng.randint(MIN_TURNS, MAX_TURNS), max_turns)
    # Opener, reaction, follow-up, reaction, follow-up: the first `count` of them. Most replies
    # open with a discourse marker or the partner's name ("Honestly, ...", "Thea, ..."), and
    # half of the openers with a short intro ("Guess what happened last night."); some
    # reactions end in a question ("Was this at the office?"), some follow-ups in an
    # afterthought ("This was last night, by the way.").
    slots = {
        "person": person, "Person": _capitalize(person),
        "thing": topic.thing, "Thing": _capitalize(topic.thing),
        "event": topic.event, "Event": _capitalize(topic.event),
        "place": topic.place, "when": rng.choice(WHEN),
    }

    def fill(template: str, position: int) -> str:
        partner = speakers[(position + 1) % 2]
        return template.format(partner=partner, Partner=partner, **slots)

    def extended(text: str, extra: str, chance: float) -> str:
        # Both draws happen whatever the outcome, so later draws do not depend on lengths.
        joined, wanted = f"{text} {extra}", rng.random() < chance
        return joined if wanted and len(joined.split()) <= 20 else text

    texts = [fill(template, position) for position, template in
             enumerate([opener, reactions[0], follow_ups[0], reactions[1], follow_ups[1]])]
    texts[1:] = [_after_prefix(fill(rng.choice((*prefixes, "{partner},")), position), text)
                 if rng.random() < 0.7 else text for position, text in enumerate(texts[1:], 1)]
    for position in (1, 3):
        texts[position] = extended(texts[position], fill(rng.choice(QUESTIONS), position), 0.4)
    for position in (2, 4):
        texts[position] = extended(texts[position], fill(rng.choice(AFTERTHOUGHTS), position),
                                   0.35)
    intro = fill(rng.choice(INTROS), 0)
    texts[0] = f"{intro} {texts[0]}" if extended(intro, texts[0], 0.5) != intro else texts[0]
    turns = tuple(Turn(speaker=speakers[position % 2], text=text)
                  for position, text in enumerate(texts[:count]))
    # The phrasing templates the turns show, so that overlap between splits can be measured.
    return turns, {"topic": topic.name, TEMPLATE: family.name, "opener": opener_name,
                   "reactions": reactions[:count // 2], "follow_ups": follow_ups[:(count - 1) // 2]}


def check_size(per_emotion: int, max_turns: int) -> None:
    """A UserError naming the option unless :func:`synthesize` can make this many dialogues
    of at most this many turns."""
    if per_emotion < 0:
        raise UserError(f"--per-emotion {per_emotion}: give zero or more dialogues per emotion")
    if not MIN_TURNS <= max_turns <= MAX_TURNS:
        raise UserError(f"--max-turns {max_turns}: give a number of turns from {MIN_TURNS} to "
                        f"{MAX_TURNS}")


def synthesize(per_emotion: int, seed: int = 0, max_turns: int = MAX_TURNS,
               keyword_free: bool = False) -> list[Record]:
    """``per_emotion`` dialogues for each of :data:`EMOTIONS`, in a seeded shuffled order.

    ``max_turns`` (2 to 5) caps the dialogue length: shorter dialogues make a cheaper demo.
    ``keyword_free`` draws only phrasing without any word of the emotion lexicon
    (:mod:`emoneuron.data.lexicon`): the emotion comes across through what happened and how
    the listener reacts; its ids read ``synth-kf-<emotion>-<n>``.
    The same arguments always give the same list, and the first ``k`` dialogues of an emotion
    are the same for any ``per_emotion >= k``.

    >>> records = synthesize(2, seed=0, max_turns=2)
    >>> len(records), records[0].emotion
    (12, 'anger')
    """
    check_size(per_emotion, max_turns)
    check_seeds("seed", (seed,))
    mode = "kf-" if keyword_free else ""
    records: list[Record] = []
    for emotion in EMOTIONS:
        for index in range(per_emotion):
            rng = random.Random(f"{seed}-{mode}{emotion}-{index}")
            turns, meta = _dialogue(emotion, rng, max_turns, keyword_free)
            records.append(Record(id=f"synth-{mode}{emotion}-{index:05d}", emotion=emotion,
                                  turns=turns, source="synth", meta=meta))
    random.Random(seed).shuffle(records)
    return records
