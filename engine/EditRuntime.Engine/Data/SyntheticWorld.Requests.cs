namespace EditRuntime.Data;

public sealed partial class SyntheticWorld
{
    /// <summary>
    /// Turns every fact into one counterfactual edit request of its subject's split. Locality
    /// material (neighbourhood, attribute and loc prompts) always names subjects of the other
    /// split: applying a whole split sequentially then never edits a fact it also measures for
    /// locality, and the two splits still share no request subject.
    /// </summary>
    private sealed class RequestBuilder
    {
        private readonly SyntheticWorld _world;
        private readonly WorldRandom _rng;
        private readonly Dictionary<(string Relation, BenchmarkSplit Split), Fact[]> _bySplit = new();
        private readonly Dictionary<(string Relation, BenchmarkSplit Split, int Object), Fact[]> _byObject = new();
        private readonly Dictionary<BenchmarkSplit, Fact[]> _allBySplit = new();

        public RequestBuilder(SyntheticWorld world, WorldRandom rng)
        {
            _world = world;
            _rng = rng;
            foreach (var g in world.Facts.GroupBy(f => (f.Relation.Id, f.Split)))
                _bySplit[g.Key] = g.ToArray();
            foreach (var g in world.Facts.GroupBy(f => (f.Relation.Id, f.Split, f.Object.Index)))
                _byObject[g.Key] = g.ToArray();
            foreach (var g in world.Facts.GroupBy(f => f.Split))
                _allBySplit[g.Key] = g.ToArray();
        }

        public IReadOnlyList<EditRequest> Build(BenchmarkSplit split)
        {
            var other = split == BenchmarkSplit.Train ? BenchmarkSplit.Eval : BenchmarkSplit.Train;
            var requests = _world.Facts.Where(f => f.Split == split).Select(f => Build(f, other)).ToList();
            // File order is shuffled so that the first T requests (sequential editing) mix relations.
            _rng.Shuffle(requests);
            return requests.Select((r, i) => r with { CaseId = i }).ToArray();
        }

        /// <summary><paramref name="rounds"/> requests per fact of <paramref name="split"/>: each round every fact once, in a shuffled order.</summary>
        public IReadOnlyList<EditRequest> BuildRounds(BenchmarkSplit split, int rounds)
        {
            var other = split == BenchmarkSplit.Train ? BenchmarkSplit.Eval : BenchmarkSplit.Train;
            var facts = _world.Facts.Where(f => f.Split == split).ToArray();
            var all = new List<EditRequest>(facts.Length * rounds);
            for (int r = 0; r < rounds; r++)
            {
                var round = facts.Select(f => Build(f, other)).ToList();
                _rng.Shuffle(round);
                all.AddRange(round);
            }
            return all.Select((r, i) => r with { CaseId = i }).ToArray();
        }

        private EditRequest Build(Fact fact, BenchmarkSplit other)
        {
            var relation = fact.Relation;
            var template = _rng.Pick(relation.TrainingTemplates);
            var targetNew = PickTargetNew(fact);

            var rephrases = fact.HeldOutPrompts();
            string rephrase = _rng.Pick(rephrases);

            // Neighbourhood: CounterFact's neighbours share target_true; we take those first, then
            // fill up with any other subject of the relation (their own true answers are listed).
            var same = Shuffled(_byObject.GetValueOrDefault((relation.Id, other, fact.Object.Index)) ?? []);
            var rest = Shuffled(_bySplit.GetValueOrDefault((relation.Id, other)) ?? []);
            var neighbours = same.Concat(rest.Where(f => f.Object.Index != fact.Object.Index))
                .Take(_world.Config.NeighborhoodPrompts).ToArray();
            if (neighbours.Length < 2)
                throw new InvalidOperationException($"{fact}: fewer than two neighbourhood subjects in the {other} split.");
            var neighbourhood = neighbours.Select(f => new PromptAnswer(FillTraining(f), f.Object.Name)).ToArray();

            var attribute = Shuffled(_byObject.GetValueOrDefault((relation.Id, other, targetNew.Index)) ?? [])
                .Take(_world.Config.AttributePrompts).Select(FillTraining).ToArray();

            var unrelated = _allBySplit[other].Where(f => f.Relation.Id != relation.Id).ToArray();
            var loc = _rng.Pick(unrelated);
            var locality = new PromptAnswer(FillTraining(loc), loc.Object.Name);

            var generation = RelationCatalog.GenerationStems[fact.Subject.Kind]
                .Select(s => s.Replace(RelationTemplate.SubjectSlot, fact.Subject.Name, StringComparison.Ordinal)).ToArray();

            return new EditRequest(-1, fact.Split, fact, template, template.Fill(fact.Subject.Name), targetNew,
                rephrases, rephrase, neighbourhood, attribute, locality, generation);
        }

        /// <summary>Another object the relation really uses (so the new answer is a plausible one), never the true one.</summary>
        private Entity PickTargetNew(Fact fact)
        {
            IReadOnlyList<Entity> pool = _world.ObjectVocabulary(fact.Relation);
            if (pool.Count < 2) pool = _world.EntitiesOf(fact.Relation.ObjectKind);
            var candidates = pool.Where(e => e.Index != fact.Object.Index).ToArray();
            if (candidates.Length == 0)
                throw new InvalidOperationException($"{fact}: no other {fact.Relation.ObjectKind} to use as target_new.");
            return _rng.Pick(candidates);
        }

        private string FillTraining(Fact f) => _rng.Pick(f.Relation.TrainingTemplates).Fill(f.Subject.Name);

        private T[] Shuffled<T>(IEnumerable<T> items)
        {
            var copy = items.ToArray();
            _rng.Shuffle(copy);
            return copy;
        }
    }
}
