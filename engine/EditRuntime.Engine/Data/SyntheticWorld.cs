namespace EditRuntime.Data;

/// <summary>
/// A made-up world of facts (countries, cities, languages, companies, universities, persons and
/// ten relations between them), fully determined by a <see cref="WorldConfig"/> and a seed, and
/// the files built from it: the training corpus for our small GPT-2-style model, the list of
/// facts, and edit benchmarks (train / eval split by subject) in the zsRE (MEND), CounterFact
/// (ROME) and EasyEdit flat formats. Every method can so be trained and measured offline.
/// <para>
/// Joining convention everywhere: prompts end without a trailing space and answers are stored
/// without a leading space, as in CounterFact; the evaluator scores <c>prompt + " " + answer</c>,
/// so the answer's first token carries the leading space as it does in the corpus.
/// </para>
/// <para>
/// Consistency: a country's capital is one of its cities; a person's country of citizenship is
/// the country of their birth city and their native language is that country's official
/// language; companies and universities sit in the major cities of the countries.
/// </para>
/// </summary>
public sealed partial class SyntheticWorld
{
    public const int DefaultSeed = 1234;

    private readonly Dictionary<EntityKind, Entity[]> _byKind;
    private readonly Dictionary<Relation, Fact[]> _factsByRelation;
    private readonly Dictionary<Relation, Entity[]> _vocabulary;

    public WorldConfig Config { get; }
    public int Seed { get; }
    /// <summary>Every entity, by <see cref="Entity.Index"/> (kinds in enum order).</summary>
    public IReadOnlyList<Entity> Entities { get; }
    public IReadOnlyList<Relation> Relations => RelationCatalog.All;
    /// <summary>Every fact, by <see cref="Fact.Id"/> (relations in catalog order, subjects in entity order).</summary>
    public IReadOnlyList<Fact> Facts { get; }
    /// <summary>One edit request per fact whose subject is in the train split, in file order.</summary>
    public IReadOnlyList<EditRequest> TrainRequests { get; }
    /// <summary>One edit request per fact whose subject is in the eval split, in file order.</summary>
    public IReadOnlyList<EditRequest> EvalRequests { get; }

    /// <summary>
    /// The meta-training split: <see cref="WorldConfig.MetaTrainVariants"/> requests per train-split fact, round by round
    /// (each round every train fact once, shuffled), each with its own training phrasing, target_new, held-out rephrase
    /// and locality prompt (from the eval split's subjects, as in <see cref="TrainRequests"/>: an eval fact is never
    /// edited). Drawn from its own random stream, so the other files do not change with it; made on first use.
    /// </summary>
    public IReadOnlyList<EditRequest> MetaTrainRequests => _metaTrain ??= new RequestBuilder(this, WorldRandom.ForStream(Seed, "meta-train")).BuildRounds(BenchmarkSplit.Train, Config.MetaTrainVariants);
    private IReadOnlyList<EditRequest>? _metaTrain;

    public IReadOnlyList<EditRequest> Requests(BenchmarkSplit split) => split == BenchmarkSplit.Train ? TrainRequests : EvalRequests;
    public IReadOnlyList<Entity> EntitiesOf(EntityKind kind) => _byKind[kind];
    public IReadOnlyList<Fact> FactsOf(Relation relation) => _factsByRelation[relation];
    /// <summary>The distinct true objects of a relation (what target_new is drawn from), by entity index.</summary>
    public IReadOnlyList<Entity> ObjectVocabulary(Relation relation) => _vocabulary[relation];

    /// <summary>Builds the world for <paramref name="config"/> (default sizes when null) and <paramref name="seed"/>.</summary>
    public static SyntheticWorld Generate(WorldConfig? config = null, int seed = DefaultSeed) => new(config ?? WorldConfig.Default, seed);

    private SyntheticWorld(WorldConfig config, int seed)
    {
        config.Validate();
        Config = config;
        Seed = seed;

        Entities = CreateEntities(config, seed);
        _byKind = Enum.GetValues<EntityKind>().ToDictionary(k => k, k => Entities.Where(e => e.Kind == k).ToArray());
        Facts = CreateFacts(config, seed);
        _factsByRelation = Relations.ToDictionary(r => r, r => Facts.Where(f => f.Relation == r).ToArray());
        _vocabulary = Relations.ToDictionary(r => r,
            r => _factsByRelation[r].Select(f => f.Object).DistinctBy(e => e.Index).OrderBy(e => e.Index).ToArray());

        var requests = new RequestBuilder(this, WorldRandom.ForStream(seed, "requests"));
        TrainRequests = requests.Build(BenchmarkSplit.Train);
        EvalRequests = requests.Build(BenchmarkSplit.Eval);
    }

    // ------------------------------------------------------------------ entities

    private static Entity[] CreateEntities(WorldConfig c, int seed)
    {
        var names = new NameGenerator(WorldRandom.ForStream(seed, "names"), RelationCatalog.TemplateWords());
        var countries = Enumerable.Range(0, c.Countries).Select(_ => names.Country()).ToArray();
        var cities = Enumerable.Range(0, c.Countries * c.CitiesPerCountry).Select(_ => names.City()).ToArray();
        var languages = Enumerable.Range(0, c.Languages).Select(_ => names.Language()).ToArray();
        var companies = Enumerable.Range(0, c.Companies).Select(_ => names.Company()).ToArray();
        var universities = Enumerable.Range(0, c.Universities).Select(_ => names.University()).ToArray();
        var given = Enumerable.Range(0, c.GivenNames).Select(_ => names.GivenName()).ToArray();
        var personRng = WorldRandom.ForStream(seed, "person-names");
        var persons = Enumerable.Range(0, c.Persons).Select(_ => $"{personRng.Pick(given)} {names.FamilyName()}").ToArray();

        var splitRng = WorldRandom.ForStream(seed, "splits");
        var all = new List<Entity>();
        void Add(EntityKind kind, string[] kindNames, bool subjectKind)
        {
            // Shuffle positions, the first nEval of them go to eval. Subject kinds keep at least two
            // subjects per side, so every request finds two neighbours in the other split.
            int n = kindNames.Length;
            int lo = subjectKind ? 2 : 1;
            int nEval = Math.Clamp((int)Math.Round(n * c.EvalFraction, MidpointRounding.AwayFromZero), lo, n - lo);
            var order = Enumerable.Range(0, n).ToArray();
            splitRng.Shuffle(order);
            var split = new BenchmarkSplit[n];
            for (int i = 0; i < n; i++) split[order[i]] = i < nEval ? BenchmarkSplit.Eval : BenchmarkSplit.Train;
            for (int i = 0; i < n; i++)
                all.Add(new Entity(all.Count, $"Q{all.Count + 1}", kind, kindNames[i], split[i]));
        }
        Add(EntityKind.Country, countries, true);
        Add(EntityKind.City, cities, true);
        Add(EntityKind.Language, languages, false);
        Add(EntityKind.Company, companies, true);
        Add(EntityKind.University, universities, true);
        Add(EntityKind.Person, persons, true);
        return all.ToArray();
    }

    // ------------------------------------------------------------------ facts

    private Fact[] CreateFacts(WorldConfig c, int seed)
    {
        var rng = WorldRandom.ForStream(seed, "facts");
        var countries = _byKind[EntityKind.Country];
        var cities = _byKind[EntityKind.City];
        var languages = _byKind[EntityKind.Language];
        var companies = _byKind[EntityKind.Company];
        var universities = _byKind[EntityKind.University];
        var persons = _byKind[EntityKind.Person];

        // Cities are generated country by country: city i lies in country i / CitiesPerCountry and
        // the first city of each country is its capital; the first MajorCitiesPerCountry are major.
        Entity CountryOf(int city) => countries[city / c.CitiesPerCountry];
        Entity CapitalOf(int country) => cities[country * c.CitiesPerCountry];
        var major = Enumerable.Range(0, cities.Length).Where(i => i % c.CitiesPerCountry < c.MajorCitiesPerCountry)
            .Select(i => cities[i]).ToArray();

        // Every language is official somewhere; the remaining countries reuse one at random.
        var officialOf = new Entity[countries.Length];
        var countryOrder = Enumerable.Range(0, countries.Length).ToArray();
        rng.Shuffle(countryOrder);
        for (int i = 0; i < countryOrder.Length; i++)
            officialOf[countryOrder[i]] = i < languages.Length ? languages[i] : rng.Pick(languages);

        var headquarters = companies.Select(_ => rng.Pick(major)).ToArray();
        var campus = universities.Select(_ => rng.Pick(major)).ToArray();
        var birthCity = persons.Select(_ => rng.Next(cities.Length)).ToArray();
        var employer = persons.Select(_ => rng.Pick(companies)).ToArray();
        var school = persons.Select(_ => rng.Pick(universities)).ToArray();

        var facts = new List<Fact>();
        void Add(Relation r, Entity subject, Entity obj)
        {
            if (subject.Kind != r.SubjectKind || obj.Kind != r.ObjectKind)
                throw new InvalidOperationException($"{r.Name}: {subject} -> {obj} has the wrong kinds.");
            facts.Add(new Fact(facts.Count, subject, r, obj));
        }
        for (int i = 0; i < countries.Length; i++) Add(RelationCatalog.Capital, countries[i], CapitalOf(i));
        for (int i = 0; i < countries.Length; i++) Add(RelationCatalog.OfficialLanguage, countries[i], officialOf[i]);
        for (int i = 0; i < cities.Length; i++) Add(RelationCatalog.CityCountry, cities[i], CountryOf(i));
        for (int i = 0; i < companies.Length; i++) Add(RelationCatalog.Headquarters, companies[i], headquarters[i]);
        for (int i = 0; i < universities.Length; i++) Add(RelationCatalog.UniversityCity, universities[i], campus[i]);
        for (int i = 0; i < persons.Length; i++) Add(RelationCatalog.BornIn, persons[i], cities[birthCity[i]]);
        for (int i = 0; i < persons.Length; i++) Add(RelationCatalog.CitizenOf, persons[i], CountryOf(birthCity[i]));
        for (int i = 0; i < persons.Length; i++)
            Add(RelationCatalog.NativeLanguage, persons[i], officialOf[birthCity[i] / c.CitiesPerCountry]);
        for (int i = 0; i < persons.Length; i++) Add(RelationCatalog.WorksFor, persons[i], employer[i]);
        for (int i = 0; i < persons.Length; i++) Add(RelationCatalog.EducatedAt, persons[i], school[i]);
        return facts.ToArray();
    }

    /// <summary>Whether some relation has this kind as its subject (so its entities' split matters).</summary>
    public static bool IsSubjectKind(EntityKind kind) => RelationCatalog.All.Any(r => r.SubjectKind == kind);

    /// <summary>The true object of (<paramref name="subject"/>, <paramref name="relation"/>), or null.</summary>
    public Entity? ObjectOf(Entity subject, Relation relation)
    {
        _factIndex ??= Facts.ToDictionary(f => (f.Subject.Index, f.Relation.Id));
        return _factIndex.TryGetValue((subject.Index, relation.Id), out var fact) ? fact.Object : null;
    }

    private Dictionary<(int Subject, string Relation), Fact>? _factIndex;
}
