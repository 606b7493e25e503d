namespace Bdh.Model.Experiments;

/// <summary>An undirected weighted graph as adjacency lists (CSR): node i's neighbours are Targets[Starts[i]..Starts[i+1]).</summary>
public sealed class WeightedGraph
{
    public int Nodes { get; }
    public int[] Starts { get; }
    public int[] Targets { get; }
    public double[] Weights { get; }
    /// <summary>Σ_j w_ij per node (a self-loop counted twice, as in A_ii of the symmetric matrix plus its transpose).</summary>
    public double[] Degrees { get; }
    /// <summary>2m: the sum of all degrees.</summary>
    public double TotalWeight { get; }

    /// <summary>From symmetric edge lists: every (i, j, w) with i ≠ j must also appear as (j, i, w); a self-loop (i, i, w) once.</summary>
    public WeightedGraph(int nodes, IReadOnlyList<(int From, int To, double Weight)> edges)
    {
        Nodes = nodes;
        Starts = new int[nodes + 1];
        foreach (var e in edges) Starts[e.From + 1]++;
        for (int i = 0; i < nodes; i++) Starts[i + 1] += Starts[i];
        Targets = new int[edges.Count];
        Weights = new double[edges.Count];
        Degrees = new double[nodes];
        var next = Starts[..nodes];
        foreach (var (from, to, w) in edges)
        {
            Targets[next[from]] = to;
            Weights[next[from]++] = w;
            Degrees[from] += from == to ? 2 * w : w;
        }
        TotalWeight = Degrees.Sum();
    }

    /// <summary>The symmetrised graph of a directed 0/1 adjacency matrix [n, n]: w_ij = A_ij + A_ji (off the diagonal).</summary>
    public static WeightedGraph Symmetrised(int n, IReadOnlyList<(int From, int To)> arcs)
    {
        var weights = new Dictionary<(int, int), double>();
        foreach (var (i, j) in arcs)
        {
            if (i == j) continue;
            var key = i < j ? (i, j) : (j, i);
            weights[key] = weights.GetValueOrDefault(key) + 1;
        }
        var edges = new List<(int, int, double)>(2 * weights.Count);
        foreach (var ((i, j), w) in weights.OrderBy(p => p.Key))
        {
            edges.Add((i, j, w));
            edges.Add((j, i, w));
        }
        return new WeightedGraph(n, edges);
    }
}

/// <summary>
/// Louvain community detection (Blondel et al. 2008): move single nodes to the neighbouring community with the best
/// modularity gain until none helps, merge each community into one node, repeat while that improves modularity.
/// Nodes are visited in an order drawn from the seed, so different seeds explore different partitions.
/// </summary>
public static class Louvain
{
    /// <summary>Newman modularity Q = (1/2m) Σ_ij (w_ij − k_i k_j / 2m) δ(c_i, c_j), from the per-community sums.</summary>
    public static double Modularity(WeightedGraph g, int[] community)
    {
        if (g.TotalWeight == 0) return 0;
        int count = community.Max() + 1;
        var inside = new double[count];
        var total = new double[count];
        for (int i = 0; i < g.Nodes; i++)
        {
            total[community[i]] += g.Degrees[i];
            for (int e = g.Starts[i]; e < g.Starts[i + 1]; e++)
                if (community[g.Targets[e]] == community[i]) inside[community[i]] += g.Targets[e] == i ? 2 * g.Weights[e] : g.Weights[e];
        }
        double m2 = g.TotalWeight, q = 0;
        for (int c = 0; c < count; c++) q += inside[c] / m2 - total[c] / m2 * (total[c] / m2);
        return q;
    }

    /// <summary>The best partition of <paramref name="seeds"/> runs (highest Q, lowest seed on ties): community per node, numbered 0.. by size.</summary>
    public static (int[] Community, double Modularity) Best(WeightedGraph g, int seeds)
    {
        var runs = Enumerable.Range(0, seeds).AsParallel().AsOrdered().Select(s => Partition(g, (ulong)s + 1)).ToArray();
        return runs.Aggregate((best, r) => r.Modularity > best.Modularity ? r : best);
    }

    public static (int[] Community, double Modularity) Partition(WeightedGraph g, ulong seed)
    {
        var rng = new Rng(seed);
        int[] community = Enumerable.Range(0, g.Nodes).ToArray(); // of the original nodes
        var level = g;
        double q = Modularity(g, community);
        while (true)
        {
            int[] moved = MoveNodes(level, rng);
            int count = Renumber(moved);
            if (count == level.Nodes) break; // no node changed community: a local optimum
            for (int i = 0; i < community.Length; i++) community[i] = moved[community[i]];
            level = Aggregate(level, moved, count);
            double next = Modularity(g, community);
            if (next <= q + 1e-12) { q = Math.Max(q, next); break; }
            q = next;
        }
        return (BySize(community), Modularity(g, community));
    }

    /// <summary>Phase one: each node in turn joins the neighbouring community that raises Q most, until a pass moves none.</summary>
    private static int[] MoveNodes(WeightedGraph g, Rng rng)
    {
        int n = g.Nodes;
        var community = Enumerable.Range(0, n).ToArray();
        var total = (double[])g.Degrees.Clone();       // Σ degrees per community
        var order = Enumerable.Range(0, n).ToArray();
        for (int i = n - 1; i > 0; i--)
        {
            int j = rng.NextInt(i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
        var linkTo = new double[n];                     // weight from the node to each community, reset after use
        var touched = new List<int>();
        double m2 = g.TotalWeight;
        if (m2 == 0) return community;
        bool changed = true;
        while (changed)
        {
            changed = false;
            foreach (int i in order)
            {
                int own = community[i];
                double k = g.Degrees[i];
                touched.Clear();
                touched.Add(own);
                for (int e = g.Starts[i]; e < g.Starts[i + 1]; e++)
                {
                    int j = g.Targets[e];
                    if (j == i) continue;
                    int c = community[j];
                    if (linkTo[c] == 0 && c != own) touched.Add(c);
                    linkTo[c] += g.Weights[e];
                }
                total[own] -= k;
                // Gain of joining c (after leaving own): link_c − total_c·k/2m, up to a common factor.
                int best = own;
                double bestGain = linkTo[own] - total[own] * k / m2;
                foreach (int c in touched)
                {
                    double gain = linkTo[c] - total[c] * k / m2;
                    if (gain > bestGain + 1e-12) (best, bestGain) = (c, gain);
                }
                total[best] += k;
                if (best != own) { community[i] = best; changed = true; }
                foreach (int c in touched) linkTo[c] = 0;
            }
        }
        return community;
    }

    /// <summary>Numbers the communities 0..count−1 in order of first appearance; returns count.</summary>
    private static int Renumber(int[] community)
    {
        var ids = new Dictionary<int, int>();
        for (int i = 0; i < community.Length; i++)
        {
            if (!ids.TryGetValue(community[i], out int id)) ids[community[i]] = id = ids.Count;
            community[i] = id;
        }
        return ids.Count;
    }

    /// <summary>Phase two: one node per community, the weights between communities summed (inside ones as a self-loop).</summary>
    private static WeightedGraph Aggregate(WeightedGraph g, int[] community, int count)
    {
        var weights = new Dictionary<(int, int), double>();
        for (int i = 0; i < g.Nodes; i++)
            for (int e = g.Starts[i]; e < g.Starts[i + 1]; e++)
            {
                int a = community[i], b = community[g.Targets[e]];
                // Each undirected edge is listed from both ends; a self-loop once, which the loop's 2w degree accounts for.
                double w = g.Targets[e] == i ? g.Weights[e] : a == b ? g.Weights[e] / 2 : g.Weights[e];
                weights[(a, b)] = weights.GetValueOrDefault((a, b)) + w;
            }
        return new WeightedGraph(count, weights.OrderBy(p => p.Key).Select(p => (p.Key.Item1, p.Key.Item2, p.Value)).ToList());
    }

    /// <summary>Community ids renumbered so 0 is the largest (ties by the smallest node).</summary>
    private static int[] BySize(int[] community)
    {
        var order = community.Select((c, i) => (c, i)).GroupBy(p => p.c)
            .OrderByDescending(grp => grp.Count()).ThenBy(grp => grp.Min(p => p.i)).Select(grp => grp.Key).ToList();
        var id = order.Select((c, rank) => (c, rank)).ToDictionary(p => p.c, p => p.rank);
        return community.Select(c => id[c]).ToArray();
    }
}
