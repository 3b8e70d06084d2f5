using System.Text.Json;
using AgentPg.Compaction;
using Microsoft.Extensions.AI;

namespace AgentPg.Tests.Unit.Tools;

/// <summary>A tool's <see cref="ToolResult"/> → what Claude receives: blocks it accepts, the rest described in text.</summary>
public sealed class ToolOutputTests
{
    private static readonly byte[] s_png = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D];
    private static readonly byte[] s_jpeg = [0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10];
    private static readonly byte[] s_webp = "RIFF\0\0\0\0WEBPVP8 "u8.ToArray();

    private static JsonElement[] Blocks(ToolOutput output)
        => output.BlocksJson is null ? [] : [.. JsonDocument.Parse(output.BlocksJson).RootElement.EnumerateArray()];

    [Fact]
    public void From_TextOnly_IsPlainTextWithoutBlocks()
    {
        var output = ToolOutput.From(ToolResult.FromContent(new TextContent("one"), new TextContent(""), new TextContent("two")));

        Assert.Equal("one\ntwo", output.Text);
        Assert.Null(output.BlocksJson);
        Assert.False(output.IsError);
    }

    [Fact]
    public void From_ImagesClaudeAccepts_BecomeBase64ImageBlocks_WithTheMediaTypeOfTheBytes()
    {
        var output = ToolOutput.From(ToolResult.FromContent(
            new TextContent("look"), new DataContent(s_png, "image/png"), new DataContent(s_jpeg, "image/jpg"), new DataContent(s_webp, "image/webp")));

        var blocks = Blocks(output);
        Assert.Equal(["text", "image", "image", "image"], blocks.Select(b => b.GetProperty("type").GetString()));
        Assert.Equal("base64", blocks[1].GetProperty("source").GetProperty("type").GetString());
        Assert.Equal(Convert.ToBase64String(s_png), blocks[1].GetProperty("source").GetProperty("data").GetString());
        Assert.Equal("image/jpeg", blocks[2].GetProperty("source").GetProperty("media_type").GetString());
        Assert.Equal("image/webp", blocks[3].GetProperty("source").GetProperty("media_type").GetString());
        Assert.Equal("look\n[image: image/png, 12 bytes]\n[image: image/jpeg, 6 bytes]\n[image: image/webp, 16 bytes]", output.Text);
    }

    [Fact]
    public void From_ImagesClaudeWouldRefuse_AreDescribedInText()
    {
        var output = ToolOutput.From(ToolResult.FromContent(
            new DataContent("not a png"u8.ToArray(), "image/png"),
            new DataContent("<svg/>"u8.ToArray(), "image/svg+xml"),
            new DataContent(new byte[ToolResult.MaxImageBytes + 1].Select((_, i) => i < s_png.Length ? s_png[i] : (byte)0).ToArray(), "image/png")));

        Assert.Null(output.BlocksJson);
        Assert.Equal(
            "[image: image/png, 9 bytes; not shown: the bytes are not a PNG image]\n" +
            "[image: image/svg+xml, 6 bytes; not shown: Claude accepts JPEG, PNG, GIF and WebP images]\n" +
            "[image: image/png, 5,242,881 bytes; not shown: larger than Claude's 5 MB limit per image]", output.Text);
    }

    [Fact]
    public void From_PdfAndPlainText_BecomeDocumentBlocks_OtherMediaTypesAreDescribed()
    {
        var output = ToolOutput.From(ToolResult.FromContent(
            new DataContent("%PDF-1.7\n"u8.ToArray(), "application/pdf") { Name = "report.pdf" },
            new DataContent("plain words"u8.ToArray(), "text/plain; charset=utf-8"),
            new DataContent("no pdf"u8.ToArray(), "application/pdf"),
            new DataContent(new byte[] { 0xC3, 0x28 }, "text/plain"),
            new DataContent(new byte[] { 1, 2 }, "audio/wav"),
            new UriContent(new Uri("https://example.com/a.png"), "image/png")));

        var blocks = Blocks(output);
        Assert.Equal(["document", "document", "text", "text", "text", "text"], blocks.Select(b => b.GetProperty("type").GetString()));
        Assert.Equal("report.pdf", blocks[0].GetProperty("title").GetString());
        Assert.Equal("application/pdf", blocks[0].GetProperty("source").GetProperty("media_type").GetString());
        Assert.Equal("text", blocks[1].GetProperty("source").GetProperty("type").GetString());
        Assert.Equal("plain words", blocks[1].GetProperty("source").GetProperty("data").GetString());
        Assert.Equal("[document: application/pdf, 6 bytes; not shown: the bytes are not a PDF]", blocks[2].GetProperty("text").GetString());
        Assert.Equal("[document: text/plain, 2 bytes; not shown: not valid UTF-8 text]", blocks[3].GetProperty("text").GetString());
        Assert.Equal("[content: audio/wav, 2 bytes; not shown: Claude does not accept audio/wav in a tool result]", blocks[4].GetProperty("text").GetString());
        Assert.StartsWith("[link: https://example.com/a.png (image/png)", blocks[5].GetProperty("text").GetString(), StringComparison.Ordinal);
        Assert.StartsWith("[document: report.pdf, application/pdf, 9 bytes]\n[document: text/plain, 11 bytes]\n", output.Text, StringComparison.Ordinal);
    }

    [Fact]
    public void From_ErrorResult_KeepsItsContentAndTheFlag_AndNulIsReplaced()
    {
        var output = ToolOutput.From(new ToolResult { Content = [new TextContent("bad\0thing"), new DataContent(s_png, "image/png")], IsError = true });

        Assert.True(output.IsError);
        Assert.Equal("bad\uFFFDthing\n[image: image/png, 12 bytes]", output.Text);
        Assert.Equal("bad\uFFFDthing", Blocks(output)[0].GetProperty("text").GetString());
    }

    [Fact]
    public async Task ContentTool_ExecuteAsync_ReturnsTheText_OrThrowsToolDiscardForAnError()
    {
        ITool ok = new ContentTool(ToolResult.FromContent(new TextContent("hi"), new DataContent(s_png, "image/png")));
        ITool failing = new ContentTool(ToolResult.Error("broken"));

        Assert.Equal("hi\n[image: image/png, 12 bytes]", await ok.ExecuteAsync(null!, default, CancellationToken.None));
        var discard = await Assert.ThrowsAsync<ToolDiscardException>(() => failing.ExecuteAsync(null!, default, CancellationToken.None));
        Assert.Equal("tool discarded: broken", discard.Message);
    }

    [Fact]
    public void TokenEstimate_ToolResultWithAnImage_CountsTheImageNotItsBase64()
    {
        var output = ToolOutput.From(ToolResult.FromContent(new TextContent("a chart"), new DataContent(new byte[200_000].Select((_, i) => i < s_png.Length ? s_png[i] : (byte)0).ToArray(), "image/png"),
            new DataContent("twelve chars"u8.ToArray(), "text/plain")));
        var block = new ContentBlock
        {
            Type = ContentTypes.ToolResult,
            ToolContent = output.Text,
            ToolContentBlocks = ContentBlocks.FromJsonArray(output.BlocksJson!),
        };

        Assert.Equal(TokenEstimate.ToolBlockOverhead + 2 + TokenEstimate.ImageTokens + 3, TokenEstimate.Of(block));
    }

    private sealed class ContentTool(ToolResult result) : IContentTool
    {
        public string Name => "content";

        public string Description => "";

        public ToolSchema InputSchema => new();

        public Task<ToolResult> ExecuteContentAsync(ToolContext context, JsonElement input, CancellationToken cancellationToken) => Task.FromResult(result);
    }
}
