namespace EditRuntime.Data;

/// <summary>
/// Sizes and layout knobs of a <see cref="SyntheticWorld"/>. Together with the seed they fully
/// determine every generated file. The defaults give 3,360 facts over 10 relations, of which
/// about 1,680 edit requests fall in the eval split.
/// </summary>
public sealed record WorldConfig
{
    /// <summary>Countries; each has <see cref="CitiesPerCountry"/> cities, the first one its capital.</summary>
    public int Countries { get; init; } = 30;
    public int CitiesPerCountry { get; init; } = 5;
    /// <summary>The first cities of each country (capital included) host companies and universities.</summary>
    public int MajorCitiesPerCountry { get; init; } = 2;
    /// <summary>Languages; each is the official language of at least one country (so at most <see cref="Countries"/>).</summary>
    public int Languages { get; init; } = 24;
    public int Companies { get; init; } = 100;
    public int Universities { get; init; } = 50;
    public int Persons { get; init; } = 600;
    /// <summary>Given names persons draw from (family names are all distinct, so full names are unique).</summary>
    public int GivenNames { get; init; } = 150;

    /// <summary>Fraction of the subjects of every kind whose facts form the eval split (the rest: train).</summary>
    public double EvalFraction { get; init; } = 0.5;
    /// <summary>Neighborhood prompts per request (other subjects, same relation, from the other split).</summary>
    public int NeighborhoodPrompts { get; init; } = 5;
    /// <summary>Most attribute prompts per request (other subjects whose true object is target_new).</summary>
    public int AttributePrompts { get; init; } = 5;

    /// <summary>Requests per train-split fact in the meta-training split (zsre_meta_train.json): each with its own training
    /// phrasing, target_new and held-out rephrase, for the hyper-network editors (MEND, MALMEN), which need far more
    /// requests than one per fact. Eval facts are never edited there.</summary>
    public int MetaTrainVariants { get; init; } = 8;

    /// <summary>Corpus sentences per document (documents are separated by a line <c>&lt;|endoftext|&gt;</c>).</summary>
    public int SentencesPerDocument { get; init; } = 16;
    /// <summary>Add one multi-fact sentence per person, city and company to the corpus (training phrasings only).</summary>
    public bool CompositeSentences { get; init; } = true;

    public static WorldConfig Default { get; } = new();

    /// <summary>Throws <see cref="ArgumentException"/> naming the first size that cannot give a valid world.</summary>
    public void Validate()
    {
        static void Require(bool ok, string message)
        {
            if (!ok) throw new ArgumentException($"WorldConfig: {message}");
        }
        Require(Countries >= 4, $"Countries must be at least 4 (got {Countries}).");
        Require(CitiesPerCountry >= 2, $"CitiesPerCountry must be at least 2 (got {CitiesPerCountry}).");
        Require(MajorCitiesPerCountry >= 1 && MajorCitiesPerCountry <= CitiesPerCountry,
            $"MajorCitiesPerCountry must be in [1, CitiesPerCountry] (got {MajorCitiesPerCountry}).");
        Require(Languages >= 2 && Languages <= Countries, $"Languages must be in [2, Countries] (got {Languages}).");
        Require(Companies >= 4, $"Companies must be at least 4 (got {Companies}).");
        Require(Universities >= 4, $"Universities must be at least 4 (got {Universities}).");
        Require(Persons >= 4, $"Persons must be at least 4 (got {Persons}).");
        Require(GivenNames >= 1, $"GivenNames must be at least 1 (got {GivenNames}).");
        Require(EvalFraction > 0 && EvalFraction < 1, $"EvalFraction must be in (0, 1) (got {EvalFraction}).");
        Require(NeighborhoodPrompts >= 2, $"NeighborhoodPrompts must be at least 2 (got {NeighborhoodPrompts}).");
        Require(AttributePrompts >= 0, $"AttributePrompts must not be negative (got {AttributePrompts}).");
        Require(MetaTrainVariants >= 1 && MetaTrainVariants <= 1000, $"MetaTrainVariants must be in [1, 1000] (got {MetaTrainVariants}).");
        Require(SentencesPerDocument >= 1, $"SentencesPerDocument must be at least 1 (got {SentencesPerDocument}).");
        int total = Countries + Countries * CitiesPerCountry + Languages + Companies + Universities + Persons + GivenNames;
        Require(total <= 200_000, $"the world would need {total} distinct name words; keep it under 200,000.");
    }
}
