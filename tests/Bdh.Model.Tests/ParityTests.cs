namespace Bdh.Model.Tests;

public class ParityTests(ITestOutputHelper output)
{
    [Theory]
    [MemberData(nameof(Shared.ParityFixtures), MemberType = typeof(Shared))]
    public void EveryGroupOfTheFixtureMatchesTheReference(string fixture)
    {
        var results = ReferenceCheck.Run(Path.Combine(Shared.Fixtures, fixture));
        foreach (var r in results) output.WriteLine(r.ToString());
        string[] groups = ["f32 logits", "f32 loss", "f32 grad encoder", "trace (", "f64 logits", "f64 loss", "f64 grad decoder",
            "adamw step 1", "loss after step 1", "adamw step 2", "greedy tokens, full", "greedy tokens, cached", "greedy tokens, recurrent"];
        Assert.All(groups, g => Assert.Contains(results, r => r.Group.StartsWith(g, StringComparison.Ordinal)));
        Assert.All(results, r => Assert.True(r.Passed, r.ToString()));
    }
}
