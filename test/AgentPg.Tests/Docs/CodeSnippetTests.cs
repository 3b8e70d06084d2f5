using System.Collections.Immutable;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace AgentPg.Tests.Docs;

/// <summary>Every C# block of the README, docs/ and the packages' READMEs compiles against the current public API, the way
/// a newcomer pastes it: a renamed member, a wrong overload or a missing <c>await</c> in the documentation fails here. Each
/// block is compiled on its own as a C# script whose globals (<see cref="SnippetGlobals"/>) are the variables the prose
/// around the blocks assumes (<c>client</c>, <c>agent</c>, <c>builder</c>, <c>app</c>, <c>db</c> …).</summary>
public sealed partial class CodeSnippetTests
{
    /// <summary>Blocks that cannot compile here, with the reason (matched by a string the block contains).</summary>
    private static readonly Dictionary<string, string> s_exempt = new(StringComparer.Ordinal)
    {
        // The OpenTelemetry SDK is the application's package, not a dependency of AgentPg or of its tests.
        ["AddOpenTelemetry()"] = "needs the OpenTelemetry packages",
    };

    private static readonly string[] s_usings =
    [
        "System", "System.Collections.Generic", "System.IO", "System.Linq", "System.Net.Http", "System.Security.Claims", "System.Text.Json",
        "System.Threading", "System.Threading.Tasks", "AgentPg", "AgentPg.AspNetCore", "AgentPg.Mcp", "AgentPg.Testing",
        "Microsoft.AspNetCore.Builder", "Microsoft.AspNetCore.Http", "Microsoft.EntityFrameworkCore", "Microsoft.Extensions.AI",
        "Microsoft.Extensions.Configuration", "Microsoft.Extensions.DependencyInjection", "Microsoft.Extensions.Hosting",
        "Microsoft.Extensions.Logging", "Npgsql", "Xunit", "AgentPg.Tests.Docs.SnippetTypes",
    ];

    private static readonly Lazy<SyntaxTree> s_globalUsings = new(() => CSharpSyntaxTree.ParseText(
        string.Concat(s_usings.Select(u => $"global using {u};\n")) + "global using static AgentPg.Tests.Docs.SnippetGlobals;\n", s_parseOptions));

    private static readonly Lazy<ImmutableArray<MetadataReference>> s_references = new(() =>
    [
        .. ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator)
            .Where(p => p.EndsWith(".dll", StringComparison.OrdinalIgnoreCase))
            .Select(p => MetadataReference.CreateFromFile(p)),
    ]);

    public static TheoryData<string> Pages()
    {
        var root = LogEventIdsTests.RepositoryRoot();
        var pages = new TheoryData<string>();
        foreach (var path in new[] { Path.Combine(root, "README.md") }
                     .Concat(Directory.GetFiles(Path.Combine(root, "docs"), "*.md").Order(StringComparer.Ordinal))
                     .Concat(Directory.GetDirectories(Path.Combine(root, "src")).Order(StringComparer.Ordinal).Select(d => Path.Combine(d, "README.md")))
                     .Where(File.Exists))
        {
            pages.Add(Path.GetRelativePath(root, path).Replace('\\', '/'));
        }

        return pages;
    }

    [Theory]
    [MemberData(nameof(Pages))]
    public void EveryCSharpBlock_Compiles(string page)
    {
        var failures = new StringBuilder();
        foreach (var (line, code) in Blocks(File.ReadAllLines(Path.Combine(LogEventIdsTests.RepositoryRoot(), page))))
        {
            if (s_exempt.Keys.FirstOrDefault(k => code.Contains(k, StringComparison.Ordinal)) is { } exempt)
            {
                continue;
            }

            var (source, offset, kind) = AsProgram(code);
            var tree = CSharpSyntaxTree.ParseText(source, s_parseOptions);
            var compilation = CSharpCompilation.Create(
                "Snippet",
                [tree, s_globalUsings.Value],
                s_references.Value,
                new CSharpCompilationOptions(kind, nullableContextOptions: NullableContextOptions.Enable));
            var errors = compilation.GetDiagnostics().Where(d => d.Severity == DiagnosticSeverity.Error).ToList();
            foreach (var error in errors)
            {
                var at = error.Location.GetLineSpan().StartLinePosition;
                failures.Append(CultureInfo.InvariantCulture, $"{page}:{line + at.Line - offset + 1}: {error.Id} {error.GetMessage(CultureInfo.InvariantCulture)}").AppendLine();
            }
        }

        Assert.True(failures.Length == 0, $"C# blocks of {page} that do not compile (a variable the prose assumes goes into SnippetGlobals):\n{failures}");
    }

    private static readonly CSharpParseOptions s_parseOptions = CSharpParseOptions.Default.WithLanguageVersion(LanguageVersion.Preview);

    /// <summary>A block as a compilation unit: statements are top-level statements (a program), type declarations follow
    /// them, and a block of members (a method with an access modifier or an attribute, as in a class body) goes into a class.
    /// The globals come from <c>global using static</c> <see cref="SnippetGlobals"/>; the block's own <c>using</c> lines stay on top.
    /// Returns the source, how many lines its code is moved down (for the line numbers of errors), and whether it is a program.</summary>
    private static (string Source, int Offset, OutputKind Kind) AsProgram(string code)
    {
        var lines = code.Split('\n');
        var usings = lines.TakeWhile(l => UsingLine().IsMatch(l) || string.IsNullOrWhiteSpace(l)).Count();
        var body = string.Join('\n', lines[usings..]);
        var header = string.Concat(lines[..usings].Select(l => l + "\n"));
        var parsed = (Microsoft.CodeAnalysis.CSharp.Syntax.CompilationUnitSyntax)CSharpSyntaxTree.ParseText(body, s_parseOptions).GetRoot();
        var statements = parsed.Members.OfType<Microsoft.CodeAnalysis.CSharp.Syntax.GlobalStatementSyntax>().ToList();
        var members = statements.Any(g => g.Statement is Microsoft.CodeAnalysis.CSharp.Syntax.LocalFunctionStatementSyntax f
                                          && (f.Modifiers.Any(m => m.IsKind(SyntaxKind.PublicKeyword) || m.IsKind(SyntaxKind.PrivateKeyword)) || f.AttributeLists.Count > 0))
                      || parsed.Members.OfType<Microsoft.CodeAnalysis.CSharp.Syntax.IncompleteMemberSyntax>().Any();
        if (members)
        {
            return (header + "public sealed class SnippetMembers\n{\n" + body + "\n}\n", 2, OutputKind.DynamicallyLinkedLibrary);
        }

        return (header + body + "\n", 0, statements.Count > 0 ? OutputKind.ConsoleApplication : OutputKind.DynamicallyLinkedLibrary);
    }

    [GeneratedRegex(@"^using [A-Za-z0-9_.]+;\s*$")]
    private static partial Regex UsingLine();

    /// <summary>The ```csharp blocks of a Markdown page: the line of their first code line (0-based) and their code.</summary>
    private static IEnumerable<(int Line, string Code)> Blocks(string[] lines)
    {
        for (var i = 0; i < lines.Length; i++)
        {
            if (!Fence().IsMatch(lines[i]))
            {
                continue;
            }

            var start = i + 1;
            var end = start;
            while (end < lines.Length && !lines[end].TrimStart().StartsWith("```", StringComparison.Ordinal))
            {
                end++;
            }

            yield return (start, string.Join('\n', lines[start..end]));
            i = end;
        }
    }

    [GeneratedRegex(@"^\s*```(csharp|cs|c#)\s*$")]
    private static partial Regex Fence();
}
