"""Deterministic story generator: fictional news prose from word banks and sentence templates.

Every text here was written for this project. Stories are built from seeded
random choices, so the same seed always gives the same story. There are many
templates and slot fillers per topic so that two generated stories are never
near-duplicates of each other (the dedupe stage must only cluster the real
copies: the wire story and the updated article).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

TOWNS = [
    "Alderbrook",
    "Kestrel Bay",
    "Marrowfield",
    "Penhallow",
    "Greywater",
    "Thornby",
    "Lindqvist Falls",
    "Oakhurst",
    "Saltmere",
    "Brackenridge",
    "Fenwick Cross",
    "Elmsworth",
    "Harrowgate Vale",
    "Corrin",
    "Westerly",
    "Duncaster",
    "Millbrook Heath",
    "Ravensholt",
    "Quenby",
    "Ashcombe",
]
RIVERS = ["River Tavy", "Orrin", "Sedgewater", "River Calder", "Brennan", "Whitlow"]
STREETS = [
    "Market Street",
    "Quarry Lane",
    "Harbour Road",
    "Station Approach",
    "Chapel Row",
    "Kingsway",
    "Mill Lane",
    "Bridge Street",
    "Fairfield Avenue",
    "Tanners Yard",
]
FIRST = [
    "Maya",
    "Tomasz",
    "Priya",
    "Oluwaseun",
    "Greta",
    "Hamish",
    "Ines",
    "Kwame",
    "Leonie",
    "Rafael",
    "Siobhan",
    "Dmitri",
    "Amara",
    "Callum",
    "Yuki",
    "Bernadette",
    "Idris",
    "Noor",
    "Fergus",
    "Paloma",
    "Elias",
    "Wren",
    "Anjali",
    "Declan",
]
LAST = [
    "Okafor",
    "Lindgren",
    "Marchetti",
    "Abernathy",
    "Kowalczyk",
    "Farrant",
    "Nakashima",
    "Delacroix",
    "Pemberton",
    "Achebe",
    "Rosales",
    "Whitcombe",
    "Haddad",
    "Brannigan",
    "Osei",
    "Van der Berg",
    "Castellano",
    "McAllister",
    "Iyer",
    "Thorsen",
    "Quinlan",
    "Mbeki",
    "Fairweather",
    "Sørensen",
]
COMPANIES = [
    "Brightline Logistics",
    "Halvorsen Foods",
    "Copperleaf Energy",
    "Meridian Textiles",
    "Northgate Robotics",
    "Ostrander Pharmaceuticals",
    "Bluefin Marine",
    "Calloway Brewing",
    "Tessellate Software",
    "Redfern Steel",
    "Juniper Health Group",
    "Pinecrest Homes",
]
CLUBS = [
    "Alderbrook Rovers",
    "Kestrel Bay Athletic",
    "Marrowfield Town",
    "Penhallow Harriers",
    "Greywater United",
    "Thornby Wanderers",
    "Saltmere Mariners",
    "Oakhurst City",
]
ROLES = [
    "council leader",
    "chief executive",
    "head teacher",
    "spokesperson",
    "resident",
    "shop owner",
    "senior lecturer",
    "chair of the residents' association",
    "union representative",
    "manager",
    "consultant engineer",
    "local historian",
    "volunteer coordinator",
    "ward councillor",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
BODIES = [
    "the planning committee",
    "the transport board",
    "the district health trust",
    "the regional water authority",
    "the county education office",
    "the harbour commission",
    "the environment agency",
    "the housing association",
]

TOPICS: dict[str, dict[str, list[str]]] = {
    "politics": {
        "headline": [
            "{town} council approves {pct} rise in parking charges after heated debate",
            "{person} named new leader of {town} council",
            "{town} residents petition against plans for {num} new homes on green belt",
            "Budget gap of {amount} forces {town} council to review library opening hours",
            "Councillors in {town} vote to pilot four-day week for {num} staff",
            "{town} ward boundaries redrawn ahead of May elections",
        ],
        "sentences": [
            "Members of {town} council voted {num} to {small} in favour of the proposal on {day} evening.",
            "The motion was tabled by {person}, who said the authority could not keep postponing difficult choices.",
            "Opposition councillors argued that the plan had been rushed through without proper consultation.",
            "A report presented to the cabinet estimated that the change would save around {amount} a year.",
            "More than {big} people signed a petition calling for the decision to be delayed.",
            "The authority has already cut spending on street lighting and grass verges over the past {small} years.",
            "Officers told the meeting that reserves had fallen to their lowest level since {year}.",
            "A public consultation will run until the end of next month, with drop-in sessions at the town hall.",
            "Campaigners gathered outside the civic centre on {street} before the meeting began.",
            "The council's scrutiny panel is expected to examine the figures again in the autumn.",
            "Several members abstained, saying they had received the final papers only the night before.",
            "The decision must still be ratified by {body}, which meets again in {small} weeks.",
            "Local business groups said they had been given little warning of the change.",
            "Turnout at the last local election in {town} was just {pct}, one of the lowest in the region.",
        ],
    },
    "business": {
        "headline": [
            "{company} to create {num} jobs at new {town} site",
            "{company} profits slip {pct} as costs bite",
            "Hundreds of jobs at risk as {company} confirms {town} plant review",
            "{company} agrees {amount} takeover of rival supplier",
            "Start-ups in {town} report record investment despite slowdown",
            "{company} opens training academy on {street}",
        ],
        "sentences": [
            "{company} said the move was part of a long-term plan to bring production closer to its customers.",
            "The firm, which employs about {big} people across the region, reported revenue of {amount} last year.",
            "Shares in the company rose {pct} in early trading after the announcement.",
            "Analysts said the results were slightly better than the market had expected.",
            "The company blamed higher energy prices and a shortage of skilled workers for the fall in margins.",
            "Construction work on the new building on {street} is due to start in the spring.",
            "Union officials said they would seek urgent talks with management about the consultation.",
            "The chamber of commerce in {town} welcomed the investment as a vote of confidence in the area.",
            "Suppliers have been told to expect new contracts to be signed before the end of the financial year.",
            "The business was founded in {year} in a converted warehouse beside the {river}.",
            "Its order book is now worth {amount}, according to figures filed with regulators.",
            "Staff will be offered retraining on automated equipment, the company added.",
            "Rival firms in the sector have reported similar pressures over the past {small} quarters.",
            "The group's chief financial officer said cash reserves remained healthy.",
        ],
    },
    "sport": {
        "headline": [
            "{club} snatch late winner to stay top of the table",
            "{club} appoint {person} as head coach",
            "Ten-man {club} hold on for goalless draw in derby",
            "{club} youngster signs first professional contract",
            "Floodlight failure halts {club} cup tie at {town}",
            "{club} fans raise {amount} for new community pitch",
        ],
        "sentences": [
            "{club} were made to work hard for the points in front of a crowd of {big} on {day}.",
            "The visitors started brightly and hit the crossbar inside the opening {small} minutes.",
            "{person} curled a free kick into the top corner just before half-time.",
            "The home side were reduced to ten men midway through the second half after a second booking.",
            "Substitute {person} forced a fine save from the goalkeeper with his first touch.",
            "The result leaves the club {small} points clear with {small} matches remaining.",
            "Supporters stayed long after the final whistle to applaud the players off the pitch.",
            "The new coach has signed a contract running until the summer of {next_year}.",
            "The academy has produced {small} first-team players in the last three seasons.",
            "The match was delayed by twenty minutes while groundstaff cleared standing water from the pitch.",
            "Ticket sales for the next home fixture have already passed {big}.",
            "The club's medical staff will assess the injured captain before the weekend.",
            "It was their {ordinal} clean sheet of the campaign.",
            "The supporters' trust said the community pitch would be open to local schools on weekdays.",
        ],
    },
    "weather": {
        "headline": [
            "Flood warnings issued for the {river} as heavy rain continues",
            "{town} records hottest {day} of the year at {temp}C",
            "Storm brings down trees and cuts power to {big} homes around {town}",
            "Frost and fog expected to disrupt morning travel across the valley",
            "Drought order considered as reservoir levels near {town} fall to {pct}",
        ],
        "sentences": [
            "Forecasters said up to {small}0mm of rain could fall on higher ground by {day} morning.",
            "The {river} burst its banks near the old mill, flooding several fields and a section of {street}.",
            "Engineers worked through the night to restore electricity to homes in {town}.",
            "The temperature at the weather station in {town} reached {temp}C shortly after 3pm.",
            "Drivers were urged to allow extra time for journeys and to avoid flooded roads.",
            "Sandbags were handed out to residents at the fire station on {street}.",
            "Reservoir levels stood at {pct} of capacity, well below the average for the time of year.",
            "The last comparable storm in the area was recorded in the winter of {year}.",
            "A yellow warning for wind remains in place until midnight.",
            "Farmers said the dry spell had already cut the expected harvest by about a fifth.",
            "Several schools delayed their opening by an hour because of icy pavements.",
            "Volunteers checked on elderly neighbours throughout the cold snap.",
            "Rail services between {town} and {town2} were suspended after a tree fell on the line.",
        ],
    },
    "science": {
        "headline": [
            "Researchers at {town} university map rare bat colony",
            "Amateur astronomer in {town} spots new comet",
            "Study finds {river} otter numbers have doubled in a decade",
            "{town} laboratory develops cheaper test for crop disease",
            "Ancient timber causeway uncovered during work on {street}",
        ],
        "sentences": [
            "The team spent {small} months recording activity at {big} sites along the valley.",
            "Their findings were published this week in a peer-reviewed journal.",
            "{person}, who led the study, said the results had surprised even the most optimistic members of the group.",
            "Radiocarbon dating suggests the timbers were felled more than {big} years ago.",
            "The new test costs a fraction of existing methods and returns results in under an hour.",
            "Volunteers with camera traps helped to gather much of the data.",
            "The discovery was first reported to the international observatory network on {day} night.",
            "Funding for the project came from a {amount} grant awarded in {year}.",
            "Similar surveys in neighbouring counties have shown a slower recovery.",
            "The researchers plan to share their software so other groups can repeat the analysis.",
            "Archaeologists will record the site in detail before it is carefully covered over again.",
            "Water quality in the river has improved steadily since the closure of an upstream works.",
            "The comet should be visible through binoculars for the next {small} weeks.",
        ],
    },
    "courts": {
        "headline": [
            "{town} man jailed for {small} years over warehouse fraud",
            "Director fined {amount} after worker injured at {company} site",
            "Jury clears former {town} councillor of misconduct",
            "Landlord ordered to repay tenants {amount} after tribunal ruling",
            "Driver banned after crash on {street} in {town}",
        ],
        "sentences": [
            "The court heard that the offences took place over a period of {small} years.",
            "Prosecutors said the defendant had shown no remorse for his actions.",
            "The judge told the court that the case had caused real distress to the victims.",
            "Defending, {person} said her client had been under severe financial pressure at the time.",
            "The jury took less than {small} hours to reach its verdicts.",
            "An investigation by {body} found that safety barriers had been removed weeks earlier.",
            "The company pleaded guilty at the first opportunity and was given credit for doing so.",
            "The tribunal ruled that the deposits had not been protected as the law requires.",
            "He was also disqualified from driving for {small} years and must take an extended retest.",
            "Police said they hoped the sentence would send a clear message.",
            "The hearing at the crown court lasted {small} days.",
            "Costs of {amount} were awarded against the defendant.",
            "Several witnesses gave evidence by video link.",
        ],
    },
    "transport": {
        "headline": [
            "New bus route to link {town} with {town2} from next month",
            "Roadworks on {street} to last until summer, residents told",
            "{town} station to get step-free access after long campaign",
            "Ferry timetable cut as {company} cites crew shortages",
            "Cycle lane plan for {street} divides opinion in {town}",
        ],
        "sentences": [
            "The service will run every {small}0 minutes during the day and hourly in the evening.",
            "Residents said the diversion had added twenty minutes to their daily journeys.",
            "The works are needed to replace a water main laid in {year}.",
            "Campaigners have been calling for lifts at the station for more than a decade.",
            "The operator said passenger numbers on the route had risen by {pct} since last year.",
            "Traders on {street} warned that fewer parking spaces would drive customers away.",
            "The scheme is funded by a {amount} grant from the regional transport fund.",
            "A final decision is expected after {body} reviews the responses.",
            "The changes were announced at a drop-in event at {town} library on {day}.",
            "Surveys found that {pct} of respondents would cycle more if the route were segregated.",
            "Temporary traffic lights will be in place at the junction with {street2}.",
            "Season ticket holders will be offered refunds for cancelled sailings.",
        ],
    },
    "culture": {
        "headline": [
            "{town} arts festival returns with {num} free events",
            "Historic cinema on {street} reopens after {amount} restoration",
            "{person} wins regional prize for debut novel",
            "Choir from {town} reaches national final",
            "Museum in {town} acquires rare collection of maritime paintings",
        ],
        "sentences": [
            "The festival programme includes theatre, folk music and a lantern parade along the {river}.",
            "Organisers expect more than {big} visitors over the long weekend.",
            "The building first opened its doors in {year} and closed in the late nineties.",
            "Volunteers spent {small} years raising money to restore the original plasterwork.",
            "The judges praised the novel's warmth and its sharp portrait of a seaside town.",
            "The choir rehearses every {day} evening in the church hall on {street}.",
            "The paintings were bought with help from a heritage fund and private donors.",
            "Tickets for the opening night sold out within {small} hours.",
            "Local schools have been invited to take part in workshops during the week.",
            "The museum plans to put the collection on display from the spring.",
            "A pop-up gallery will occupy an empty shop unit on {street2} for the summer.",
            "Many of the performers grew up within a few miles of the venue.",
        ],
    },
}

#: Sentences that fit any story; mixed into every topic's pool so long stories repeat themselves less.
GENERIC = [
    "The details were confirmed in a written answer published on {day}.",
    "Residents who want to comment can do so online or in writing until the end of the month.",
    "A spokesperson for {body} said it would study the findings carefully before responding.",
    "The issue has been raised at every public meeting in {town} since the spring.",
    "Figures released last year showed a similar pattern across the wider region.",
    "It is not the first time the question has divided opinion in {town2}.",
    "Those involved say the coming weeks will be crucial.",
    "A further update is expected once the summer recess is over.",
    "The full report runs to more than {num} pages and includes several recommendations.",
    "People living nearby said they had noticed the changes some time ago.",
    "Questions about funding for the next {small} years remain unanswered.",
    "A meeting between the two sides has been pencilled in for {day}.",
    "The area has changed a great deal since the {decade}, when the old works closed.",
    "{person}, who has lived on {street} for most of her life, said she was cautiously optimistic.",
    "Neighbouring councils are understood to be watching the outcome closely.",
    "The original proposal dates back to {year} but was shelved after objections.",
]

QUOTES = [
    "“We have listened carefully to what people told us, and this is the fairest option on the table,” said {person}, {role}.",
    "“It has been a difficult few months, but I think we are now heading in the right direction,” {person} said.",
    "“Nobody asked us what we thought, and that is what makes people so angry,” said {person}, a {role} in {town}.",
    "“This is a proud day for everyone who has worked so hard behind the scenes,” said {person}.",
    "{person}, {role}, said: “We knew there would be challenges, but the response has been remarkable.”",
    "“I have lived here for {small}0 years and I have never seen anything like it,” said {person}.",
    "“The numbers speak for themselves,” said {person}. “We simply cannot carry on as before.”",
    "“There is still a lot of work to do, and we will not rest until it is finished,” {person}, {role}, added.",
    "“We want to make sure that families feel the benefit first,” said {person}.",
    "“Frankly, it came as a shock to all of us,” said {person}, {role}.",
    "“People should keep an eye on the forecasts and look out for their neighbours,” {person} said.",
    "Asked whether the decision could be reversed, {person} said: “Never say never, but it is unlikely.”",
]

CONNECTIVE = [
    "Meanwhile, {lower}",
    "However, {lower}",
    "In a statement, officials confirmed that {lower}",
    "Earlier this year, {lower}",
    "According to figures seen by this newspaper, {lower}",
] + ["{sentence}"] * 14  # most sentences stand alone; a few get a connective

ORDINALS = ["third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth"]


@dataclass
class Story:
    """One generated news story, independent of which outlet runs it."""

    story_id: str
    slug: str
    title: str
    topic: str
    standfirst: str
    paragraphs: list[str]
    author: str
    tags: list[str] = field(default_factory=list)

    @property
    def word_count(self) -> int:
        return sum(len(p.split()) for p in self.paragraphs)


def slugify(text: str) -> str:
    """URL slug of a headline."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80]


def person(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def _fill(template: str, rng: random.Random) -> str:
    """Fill every {slot} in a template with a fresh random choice."""
    towns = rng.sample(TOWNS, 2)
    streets = rng.sample(STREETS, 2)
    year = rng.randint(1961, 2019)
    values = {
        "town": towns[0],
        "town2": towns[1],
        "street": streets[0],
        "street2": streets[1],
        "river": rng.choice(RIVERS),
        "company": rng.choice(COMPANIES),
        "club": rng.choice(CLUBS),
        "person": person(rng),
        "role": rng.choice(ROLES),
        "day": rng.choice(DAYS),
        "body": rng.choice(BODIES),
        "num": str(rng.randint(12, 480)),
        "small": str(rng.randint(2, 9)),
        "big": f"{rng.randint(1, 48) * 250:,}",
        "pct": f"{rng.randint(3, 68)}%",
        "amount": f"£{rng.randint(2, 95)}{rng.choice(['0,000', '.4m', '.8m', 'm', '5,000'])}",
        "year": str(year),
        "next_year": str(rng.randint(2027, 2031)),
        "temp": str(rng.randint(27, 36)),
        "ordinal": rng.choice(ORDINALS),
        "decade": rng.choice(["1970s", "1980s", "1990s"]),
    }
    return template.format(**values)


COMMON_STARTS = {
    "The",
    "Their",
    "Its",
    "A",
    "An",
    "More",
    "Several",
    "Many",
    "Officers",
    "Drivers",
    "Each",
    "Shares",
    "Analysts",
    "Suppliers",
    "Staff",
    "Rival",
    "Residents",
    "Campaigners",
    "Members",
    "Opposition",
    "Local",
    "Construction",
    "Union",
    "Supporters",
    "Substitute",
    "Ticket",
    "Forecasters",
    "Engineers",
    "Sandbags",
    "Reservoir",
    "Rail",
    "Farmers",
    "Volunteers",
    "Radiocarbon",
    "Funding",
    "Similar",
    "Water",
    "Archaeologists",
    "Prosecutors",
    "Police",
    "Costs",
    "Traders",
    "Temporary",
    "Surveys",
    "Season",
    "Tickets",
    "Organisers",
    "Defending,",
    "It",
    "He",
    "Turnout",
    "Ten-man",
    "Those",
    "Figures",
    "People",
    "Questions",
    "Neighbouring",
}


def _sentence(rng: random.Random, pool: list[str]) -> str:
    base = _fill(pool.pop() if pool else "", rng)
    # Lower-case the first word only when it is a common word; names keep their capital.
    lower = base[0].lower() + base[1:] if base.split()[0] in COMMON_STARTS else base
    return rng.choice(CONNECTIVE).format(sentence=base, lower=lower)


def headline(seed: str, topic: str | None = None) -> tuple[str, str]:
    """(title, topic) of `make_story(seed, topic)`, without generating the body (fast, for bulk listings)."""
    rng = random.Random(seed)
    topic = topic or rng.choice(sorted(TOPICS))
    title = _fill(rng.choice(TOPICS[topic]["headline"]), rng)
    return title[0].upper() + title[1:], topic


def make_story(seed: str, topic: str | None = None, *, min_words: int = 250, max_words: int = 900) -> Story:
    """A deterministic story for `seed`: 250-900 words, several paragraphs, quotes with curly quotes."""
    rng = random.Random(seed)
    topic = topic or rng.choice(sorted(TOPICS))
    bank = TOPICS[topic]
    title = _fill(rng.choice(bank["headline"]), rng)
    title = title[0].upper() + title[1:]
    target = rng.randint(min_words + 30, max_words - 120)
    paragraphs: list[str] = []
    quotes = rng.sample(QUOTES, len(QUOTES))
    words = 0
    pool: list[str] = []
    generic = rng.sample(GENERIC, 4)  # a few per story: shared sentences make stories alike
    while words < target:
        if paragraphs and len(paragraphs) % 3 == 1 and quotes:
            para = _fill(quotes.pop(), rng)
        else:
            n = rng.randint(2, 4)
            if len(pool) < n:  # each template at most once per round, so a story does not repeat itself
                sentences = bank["sentences"] + generic
                pool = rng.sample(sentences, len(sentences))
            para = " ".join(_sentence(rng, pool) for _ in range(n))
        paragraphs.append(para)
        words += len(para.split())
    while words > max_words and len(paragraphs) > 3:
        words -= len(paragraphs.pop().split())
    standfirst = _fill(rng.choice(bank["sentences"]), rng)
    return Story(
        story_id=f"story-{slugify(seed)}",
        slug=slugify(title),
        title=title,
        topic=topic,
        standfirst=standfirst,
        paragraphs=paragraphs,
        author=person(rng),
        tags=[topic, rng.choice(TOWNS).lower().replace(" ", "-")],
    )


# --------------------------------------------------------------------------- the wire story

WIRE_TITLE = "Rail operator orders forty new trains in biggest fleet renewal for a generation"
WIRE_PARAGRAPHS = [
    "A regional rail operator has ordered forty new electric trains in a deal worth £610m, the largest "
    "renewal of its fleet since the line was electrified more than thirty years ago.",
    "The trains, to be built at a factory in Redfern, will replace carriages that have been in service "
    "since 1989 and are increasingly prone to breakdowns in cold weather.",
    "Coastline Rail said the first units would carry passengers between Kestrel Bay and Duncaster from "
    "the spring of 2029, with the whole fleet in service two years later.",
    "“Our passengers have been patient with ageing trains for far too long,” said Oluwaseun Haddad, the "
    "operator’s managing director. “These trains will be quieter, more reliable and will carry a third "
    "more people at the busiest times of day.”",
    "Each train will have space for six bicycles and two wheelchair users, as well as charging points at "
    "every pair of seats and real-time information screens in each carriage.",
    "The contract is expected to support about 1,200 jobs at the factory and in its supply chain, "
    "according to estimates published alongside the announcement.",
    "Passenger groups welcomed the order but warned that new trains alone would not solve overcrowding "
    "on the route, where platforms at several stations are too short for longer services.",
    "“It is good news, but the platforms at Saltmere and Quenby still only take four carriages,” said "
    "Bernadette Nakashima of the Coastline Passengers’ Forum. “Unless that is fixed, the extra capacity "
    "will be stuck in the sidings.”",
    "The operator said it was in talks with the infrastructure owner about extending platforms, and that "
    "a decision on funding was expected before the end of the year.",
    "The old trains will be offered for sale to heritage railways and other operators before any are "
    "scrapped, the company added.",
]
WIRE_EXTRA = (
    "Engineers will test the first train on a closed section of track near Thornby for six months "
    "before it carries any passengers."
)
WIRE_ALT_TITLES = [
    "£610m order for forty new trains on the Coastline route",
    "Coastline Rail to replace 1980s fleet with forty electric trains",
]


def wire_variant(n: int) -> tuple[str, list[str]]:
    """Copy `n` (0-5) of the wire story: light, different edits per copy (headline, sentence, order)."""
    paras = list(WIRE_PARAGRAPHS)
    title = WIRE_TITLE
    if n == 1:  # a changed headline
        title = WIRE_ALT_TITLES[0]
    elif n == 2:  # the last paragraph dropped
        paras = paras[:-1]
    elif n == 3:  # two paragraphs swapped
        paras[4], paras[5] = paras[5], paras[4]
    elif n == 4:  # a sentence added
        paras.insert(6, WIRE_EXTRA)
    elif n == 5:  # new headline, a sentence dropped from a paragraph
        title = WIRE_ALT_TITLES[1]
        paras[2] = paras[2].split(", with the whole fleet")[0] + "."
    return title, paras


# --------------------------------------------------------------------------- the updated article

UPDATED_TITLE = "Harbour bridge closed after inspectors find cracked bearings"
UPDATED_V1 = [
    "The harbour swing bridge in Saltmere has been closed to all traffic after a routine inspection found "
    "cracks in two of the bearings that carry its weight.",
    "Engineers from the harbour commission said the bridge would stay shut until further notice while "
    "specialists assess how serious the damage is.",
    "Pedestrians and cyclists face a detour of almost two miles via the Quay Road crossing, and two bus "
    "routes have been diverted.",
    "“Safety has to come first, and we will not reopen the bridge until we are certain it is sound,” said "
    "Ines Pemberton, chief engineer at the harbour commission.",
    "The bridge, which opened in 1934, carries about 9,000 vehicles a day and swings open several times a "
    "week to let tall-masted boats into the inner harbour.",
]
UPDATED_CORRECTION = (
    "Correction: an earlier version of this article said the bridge carries about 9,000 "
    "vehicles a day. The correct figure is about 6,500."
)
UPDATED_V2_EXTRA = [
    "The commission said on Thursday afternoon that a temporary footbridge would be installed within ten "
    "days, cutting the walking detour for people travelling between the two halves of the town.",
    "Traders on the eastern quay said footfall had already fallen sharply since the closure.",
]
UPDATED_V3_EXTRA = [
    "Specialist divers who examined the bridge’s foundations on Friday found no further damage below the "
    "waterline, the commission said.",
    "“This is the news we were hoping for,” said Pemberton. “We now expect to replace the bearings over "
    "three weekends and reopen the bridge to traffic by the end of next month.”",
    "The repair is expected to cost about £1.2m, which will be met from the commission’s maintenance reserve.",
]


def updated_versions() -> list[list[str]]:
    """The three versions of the updated article, in order (epoch 0, 1, 2)."""
    v1 = list(UPDATED_V1)
    fixed = [p.replace("about 9,000 vehicles", "about 6,500 vehicles") for p in v1]
    v2 = fixed + UPDATED_V2_EXTRA + [UPDATED_CORRECTION]
    v3 = fixed[:3] + UPDATED_V3_EXTRA[:1] + fixed[3:] + UPDATED_V2_EXTRA + UPDATED_V3_EXTRA[1:] + [UPDATED_CORRECTION]
    return [v1, v2, v3]


# --------------------------------------------------------------------------- the accented (charset) article

CHARSET_TITLE = "Café owners from Zürich and São Paulo open a bakery on the Saltmere seafront"
CHARSET_PARAGRAPHS = [
    "Two friends who met while training as pastry chefs in Zürich have opened a café and bakery on the "
    "Saltmere seafront, serving recipes from Switzerland and from São Paulo.",
    "Renée Lindqvist and João Castellano spent eighteen months converting a former chandlery into a bright "
    "room with twenty seats and a wood-fired oven at the back.",
    "“We wanted a place where a crème brûlée and a pão de queijo can sit side by side on the counter,” said "
    "Castellano. “People here have been so curious and kind.”",
    "The menu changes every week. Regulars already have favourites: the Zürcher Tirggel biscuits at "
    "Christmas, the brigadeiros on Saturdays and a strong café com leite every morning.",
    "The pair employ four people, including two apprentices from the college in Penhallow, and plan to "
    "open on Sunday mornings from next month.",
    "“Saltmere reminds me a little of the lake at Zürich on a grey day,” said Lindqvist, smiling. “Only "
    "with more seagulls, and better fish and chips.”",
]
#: Curly quotes whose UTF-8 bytes (E2 80 9C / E2 80 9D) hold a byte cp1252 leaves undefined: read as the
#: declared ISO-8859-1 they turn into U+FFFD, which no repair can undo.
CURLY_QUOTED = ["“We wanted a place", "so curious and kind.”"]
ACCENTED_WORDS = ["Café", "Zürich", "São Paulo", "Renée", "João", "crème brûlée", "pão de queijo"]
