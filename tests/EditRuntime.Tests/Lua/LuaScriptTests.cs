using System.Diagnostics;
using EditRuntime.Lua;
using EditRuntime.TextTests;
using NUnit.Framework;

namespace EditRuntime.Tests.Lua;

/// <summary>The scripts in scripts/ run end to end (Torch backend, small sizes), and the CLI's run / lua / bench lua.</summary>
public sealed class LuaScriptTests
{
    private static string ScriptPath(string name) => Path.Combine(TokFixtures.RepoRoot, "scripts", name);

    private static string RunScript(string name, params string[] args)
    {
        var output = new StringWriter();
        using var h = new LuaHost(new LuaHostOptions { DefaultBackend = "torch", Output = output });
        try { h.RunFile(ScriptPath(name), args); }
        catch (LuaScriptException e) { Assert.Fail(e.Report + "\n--- output:\n" + output); }
        TestContext.Out.WriteLine(output);
        return output.ToString();
    }

    [Test]
    public void Demo_edits_a_fact_and_shows_paraphrase_and_locality()
    {
        var o = RunScript("demo.lua");
        Assert.That(o, Does.Contain("editor        MELO on h.2.mlp.c_proj, h.3.mlp.c_fc"), "the demo edits with MELO");
        Assert.That(o, Does.Contain("the edit      Neplith  ->  Dedind"));
        Assert.That(o, Does.Contain("<- the new fact").And.Contain("<- follows the edit").And.Contain("<- unchanged, as it should be"));
        Assert.That(o, Does.Contain("metrics       ES 1.00   GS 1.00   LS 1.00"));
        Assert.That(o, Does.Contain("rolled back   Q: Where was Vaurti Vozobek born? A: Neplith"));
    }

    [Test]
    public void Custom_editor_written_in_Lua_edits_and_removes_one_edit()
    {
        var o = RunScript("custom_editor.lua", "2");
        var lines = o.Split('\n');
        Assert.That(lines.Single(l => l.StartsWith("after")), Does.Contain("Detia"));
        Assert.That(lines.Single(l => l.StartsWith("removed")), Does.Contain("Flazam"), "removing the edit restores the answer");
        Assert.That(o, Does.Match(@"sequential, 2 edits:  ES 1\.000"));
    }

    [Test]
    public void Sequential_and_compare_scripts_run()
    {
        var o = RunScript("sequential_edit.lua", "3", "ft-l", "2");
        Assert.That(o, Does.Contain("FT-L, 3 sequential edits").And.Contain("after 3 edits: ES").And.Contain("edit 3/3").And.Contain("rt.eval.run sequential: ES"));
        var dir = Path.Combine(Path.GetTempPath(), "editrt-compare-" + Guid.NewGuid().ToString("N"));
        try
        {
            o = RunScript("compare_editors.lua", "2", dir);
            Assert.That(o, Does.Contain("FT-L   batch").And.Contain("GRACE  sequential"));
            var md = File.ReadAllText(Path.Combine(dir, "report.md"));
            Assert.That(md.Split('\n').Count(l => l.StartsWith("| FT-L") || l.StartsWith("| GRACE")), Is.EqualTo(4));
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }

    [Test]
    public void Run_reports_script_errors_as_file_line_message_with_a_traceback()
    {
        var script = Path.Combine(Path.GetTempPath(), $"broken-{Guid.NewGuid():N}.lua");
        File.WriteAllText(script, "print('args', ...)\nlocal function f()\n  rt.tensor.zeros('x')\nend\nf()\n");
        try
        {
            var (code, stdout, stderr) = EditrtProcess.Run($"run \"{script}\" a b --backend torch");
            Assert.That(code, Is.EqualTo(1));
            Assert.That(stdout, Does.Contain("args\ta\tb"));
            Assert.That(stderr, Does.StartWith($"{script}:3: bad argument #1 to 'rt.tensor.zeros' (table expected, got string)"));
            Assert.That(stderr, Does.Contain("stack traceback:").And.Contain($"{script}:3: in").And.Contain($"{script}:5: in main chunk"));
            (code, _, stderr) = EditrtProcess.Run($"run \"{script}\" --max-instructions -5");
            Assert.That(code, Is.EqualTo(1));
            Assert.That(stderr, Does.Contain("--max-instructions"));
        }
        finally { File.Delete(script); }
    }

    [Test]
    public void Run_limits_come_from_the_flags()
    {
        var script = Path.Combine(Path.GetTempPath(), $"loop-{Guid.NewGuid():N}.lua");
        File.WriteAllText(script, "local t = {}\nfor i = 1, 2e5 do t[i] = {i} end\nprint(#t)\n");
        try
        {
            var (code, stdout, stderr) = EditrtProcess.Run($"run \"{script}\" --max-instructions 100000");
            Assert.That(code, Is.EqualTo(1));
            Assert.That(stderr, Does.StartWith($"{script}:2: instruction budget of 100,000 exceeded"));
            (code, _, stderr) = EditrtProcess.Run($"run \"{script}\" --memory-limit 2");
            Assert.That(code, Is.EqualTo(1));
            Assert.That(stderr, Does.StartWith($"{script}:2: memory limit of 2 MiB exceeded"));
            (code, stdout, _) = EditrtProcess.Run($"run \"{script}\"");
            Assert.That(code, Is.Zero);
            Assert.That(stdout.Trim(), Is.EqualTo("200000"));
        }
        finally { File.Delete(script); }
    }

    [Test]
    public void Interactive_lua_keeps_going_after_errors()
    {
        var dll = Path.Combine(TestContext.CurrentContext.TestDirectory, "editrt.dll");
        var psi = new ProcessStartInfo("dotnet", $"\"{dll}\" lua --backend torch --max-instructions 1000000")
        { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        p.StandardInput.Write("x = 20\nx + 22\nnosuch()\nfor i = 1,\n 3 do x = x + i end\nx\nwhile true do end\nstring.format('%d', 7)\n");
        p.StandardInput.Close();
        var o = p.StandardOutput.ReadToEndAsync();
        var e = p.StandardError.ReadToEnd();
        p.WaitForExit();
        TestContext.Out.WriteLine(o.Result + "\n" + e);
        Assert.That(p.ExitCode, Is.Zero);
        Assert.That(o.Result.Split('\n', StringSplitOptions.RemoveEmptyEntries), Is.EqualTo(new[] { "42", "26", "7" }));
        Assert.That(e, Does.Contain("stdin:1: attempt to call a nil value (global 'nosuch')"));
        Assert.That(e, Does.Contain("stdin:1: instruction budget of 1,000,000 exceeded"));
    }

    [Test]
    public void Bench_lua_prints_the_call_overhead()
    {
        var (code, stdout, _) = EditrtProcess.Run("bench lua --calls 20000");
        Assert.That(code, Is.Zero);
        Assert.That(stdout, Does.Contain("C# function, no arguments (rt.* wrapper)").And.Contain("ns/call"));
        Assert.That(stdout.Split('\n').Count(l => l.TrimEnd().EndsWith("ns/call")), Is.EqualTo(8));
    }

    [Test]
    public void Help_lists_the_lua_commands_and_limits()
    {
        var (code, stdout, _) = EditrtProcess.Run("run --help");
        Assert.That(code, Is.Zero);
        Assert.That(stdout, Does.Contain("--max-instructions").And.Contain("--memory-limit").And.Contain("--allow-write").And.Contain("--backend"));
        (_, stdout, _) = EditrtProcess.Run("--help");
        Assert.That(stdout, Does.Contain("run").And.Contain("lua"));
    }
}
