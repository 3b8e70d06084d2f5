using System.Text;
using Microsoft.Extensions.Configuration;

namespace AgentPg.Tests.Docs;

/// <summary>Every <c>"AgentPg"</c> configuration section shown in a JSON block of the README or docs/ binds to
/// <see cref="AgentPgOptions"/> the way <c>AddAgentPg(IConfiguration)</c> binds it (an unknown key fails) and is valid.</summary>
public sealed class ConfigurationSnippetTests
{
    [Fact]
    public void EveryAgentPgSectionInTheDocs_BindsAndIsValid()
    {
        var root = LogEventIdsTests.RepositoryRoot();
        var sections = 0;
        foreach (var path in Directory.GetFiles(Path.Combine(root, "docs"), "*.md").Append(Path.Combine(root, "README.md")))
        {
            var lines = File.ReadAllLines(path);
            for (var i = 0; i < lines.Length; i++)
            {
                if (lines[i].Trim() != "```json")
                {
                    continue;
                }

                var end = Array.FindIndex(lines, i + 1, l => l.TrimStart().StartsWith("```", StringComparison.Ordinal));
                var json = string.Join('\n', lines[(i + 1)..end]);
                i = end;
                var configuration = new ConfigurationBuilder().AddJsonStream(new MemoryStream(Encoding.UTF8.GetBytes(json))).Build();
                var section = configuration.GetSection("AgentPg");
                if (!section.Exists())
                {
                    continue;
                }

                sections++;
                var options = new AgentPgOptions();
                var where = $"{Path.GetRelativePath(root, path)}, the JSON block at line {i + 1 - json.Split('\n').Length}";
                var bind = Record.Exception(() => section.Bind(options, binder => binder.ErrorOnUnknownConfiguration = true));
                Assert.True(bind is null, $"{where} does not bind: {bind?.Message}");
                Assert.True(options.Validate().Count == 0, $"{where} is invalid: {string.Join("; ", options.Validate())}");
            }
        }

        Assert.True(sections >= 2, $"only {sections} AgentPg sections found in the docs' JSON blocks");
    }
}
