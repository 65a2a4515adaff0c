import Foundation
import Testing
import KVTensor
import TestSupport

/// `kvstore profile`, `put --profile`, `encode --profile`, `calibrate` and the uncalibrated notes
/// of `stat` / `ls`, through the real binary.
@Suite struct ProfileCLITests {
    let dir = TestSupport.scratchDirectory("cli-profile")
    var store: String { dir + "/store" }
    let fixture = TestSupport.fixture("smollm2_ctx96_f16.safetensors")
    let profile = TestSupport.numpyProfile

    @Test func storesProfilesPerModelAndReportsUncalibratedModels() throws {
        defer { TestSupport.removeTree(dir) }
        let put = try TestSupport.run(["put", fixture, "--store", store, "--levels", "0,2"])
        #expect(put.status == 0, "\(put.stderr)")
        let stat = try TestSupport.run(["stat", "--store", store])
        #expect(stat.stdout.contains("uncalibrated: SmolLM2-135M-Instruct"), "\(stat.stdout)")
        #expect(try TestSupport.run(["ls", "--store", store]).stdout.contains("uncalibrated (lossy levels on the default codec profile): SmolLM2-135M-Instruct"))

        let add = try TestSupport.run(["profile", "add", profile, "--store", store])
        #expect(add.status == 0 && add.stdout.contains("calibrated profile of SmolLM2-135M-Instruct"), "\(add.stderr)")
        #expect(try TestSupport.run(["stat", "--store", store]).stdout.contains("uncalibrated: none"))
        let ls = try TestSupport.run(["profile", "ls", "--store", store])
        #expect(ls.stdout.contains("SmolLM2-135M-Instruct  30x2x3x64  calibrated"), "\(ls.stdout)")
        let show = try TestSupport.run(["profile", "show", "SmolLM2-135M-Instruct", "--store", store])
        #expect(show.status == 0 && show.stdout.contains("\"key_pair_energy\"") && show.stdout.contains("SmolLM2-135M-Instruct"))

        // A profile of another model is refused for this context.
        let other = dir + "/other.json"
        let text = String(decoding: try FileIO.readAll(profile), as: UTF8.self).replacingOccurrences(of: "\"SmolLM2-135M-Instruct\"", with: "\"other\"")
        try FileIO.writeAtomically([Array(text.utf8)], to: other, sync: false)
        let wrong = try TestSupport.run(["put", fixture, "--store", store, "--profile", other])
        #expect(wrong.status != 0 && wrong.stderr.contains("is the profile of other, not SmolLM2-135M-Instruct"), "\(wrong.stderr)")
        #expect(try TestSupport.run(["profile", "rm", "SmolLM2-135M-Instruct", "--store", store]).status == 0)
        #expect(try TestSupport.run(["profile", "rm", "SmolLM2-135M-Instruct", "--store", store]).status != 0)

        // The GGUF's profile (calibrated through llama.cpp) filed for the same weights' numpy KV.
        let shipped = TestSupport.profile("SmolLM2-135M-Instruct-Q4_1")
        let alias = try TestSupport.run(["profile", "add", shipped, "--model", "SmolLM2-135M-Instruct", "--store", store])
        #expect(alias.status == 0 && alias.stdout.contains("calibrated profile of SmolLM2-135M-Instruct (30x2x3x64)"), "\(alias.stdout)\(alias.stderr)")
        #expect(try TestSupport.run(["stat", "--store", store]).stdout.contains("uncalibrated: none"))
        let filed = try TestSupport.run(["profile", "show", "SmolLM2-135M-Instruct", "--store", store]).stdout
        #expect(filed.contains("\"level_step_scales\""), "\(filed)")
        #expect(try TestSupport.run(["profile", "add", shipped, "--model", "", "--store", store]).status != 0)
    }

    @Test func encodeUsesTheProfileFileAndCalibrateWritesTheDefault() throws {
        defer { TestSupport.removeTree(dir) }
        let def = dir + "/default.json"
        let cal = try TestSupport.run(["calibrate", fixture, "-o", def])
        #expect(cal.status == 0, "\(cal.stderr)")
        let written = String(decoding: try FileIO.readAll(def), as: UTF8.self)
        #expect(written.contains("\"calibrated\" : false") || written.contains("\"calibrated\": false"), "\(written.prefix(200))")
        var sizes: [Int] = []
        for extra in [[], ["--profile", def], ["--profile", profile]] {
            let out = dir + "/out.kvc"
            let r = try TestSupport.run(["encode", fixture, "--level", "2", "-o", out] + extra)
            #expect(r.status == 0, "\(r.stderr)")
            sizes.append(try FileIO.readAll(out).count)
            let back = try TestSupport.run(["decode", out, "-o", dir + "/back.safetensors"])
            #expect(back.status == 0, "\(back.stderr)")
        }
        #expect(sizes[0] == sizes[1], "no --profile is the KV-derived default")
        #expect(sizes[2] < sizes[0], "the calibrated profile compresses more: \(sizes)")
        let bad = dir + "/bad.json"
        try FileIO.writeAtomically([Array("{\"format\": \"kvstore-codec-profile\"}".utf8)], to: bad, sync: false)
        let r = try TestSupport.run(["encode", fixture, "--level", "2", "-o", dir + "/x.kvc", "--profile", bad])
        #expect(r.status == 1 && r.stderr.contains("not a codec profile"), "\(r.stderr)")
    }
}
