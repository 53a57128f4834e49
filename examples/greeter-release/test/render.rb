# Renders one job's templates the way the director would, for tests only.
#
#   ruby render.rb JOB_DIR CONTEXT_JSON OUT_DIR
#
# CONTEXT_JSON: {"spec": {name, index, id, az, address, deployment, bootstrap},
#                "properties": {...manifest job properties...},
#                "links": {"<consumed link>": {"instances": [...], "properties": {...}}}}
#
# The job spec's property defaults are applied, undeclared properties are
# dropped, and only declared consumed links are visible. The evaluation
# context offers what release templates may use: p, if_p (with .else),
# spec.*, link(name) (instances, p, if_p), if_link (with .else).
require 'erb'
require 'fileutils'
require 'json'
require 'ostruct'
require 'yaml'

def lookup(hash, dotted)
  dotted.split('.').reduce(hash) { |h, k| h.is_a?(Hash) ? h[k] : nil }
end

def store(hash, dotted, value)
  keys = dotted.split('.')
  last = keys.pop
  keys.reduce(hash) { |h, k| h[k] ||= {} }[last] = value
end

def to_struct(value)
  case value
  when Hash then OpenStruct.new(value.transform_values { |v| to_struct(v) })
  when Array then value.map { |v| to_struct(v) }
  else value
  end
end

# The object returned by if_p / if_link: runs an else block when nothing ran.
class ElseBlock
  def initialize(done)
    @done = done
  end

  def else
    yield unless @done
  end
end

module PropertyLookup
  def p(*args)
    names = Array(args[0])
    names.each do |name|
      value = lookup(@properties, name)
      return value unless value.nil?
    end
    return args[1] if args.length == 2
    raise "Can't find property '#{names.inspect}'"
  end

  def if_p(*names)
    values = names.map { |name| lookup(@properties, name) }
    return ElseBlock.new(false) if values.any?(&:nil?)
    yield(*values)
    ElseBlock.new(true)
  end
end

class Link
  include PropertyLookup
  attr_reader :instances, :properties

  def initialize(hash)
    @properties = hash['properties'] || {}
    @instances = (hash['instances'] || []).map { |i| to_struct(i) }
  end
end

class Context
  include PropertyLookup
  attr_reader :spec

  def initialize(spec, properties, links)
    @properties = properties
    @links = links
    @spec = to_struct(spec.merge('properties' => properties))
  end

  def name = @spec.name
  def index = @spec.index

  def link(name)
    raise "Can't find link '#{name}'" unless @links.key?(name)

    Link.new(@links[name])
  end

  def if_link(name)
    return ElseBlock.new(false) unless @links.key?(name)

    yield link(name)
    ElseBlock.new(true)
  end

  def render(text) = ERB.new(text, trim_mode: '-').result(binding)
end

job_dir, context_file, out_dir = ARGV
abort 'usage: ruby render.rb JOB_DIR CONTEXT_JSON OUT_DIR' unless out_dir
job_spec = YAML.safe_load(File.read(File.join(job_dir, 'spec')))
context = JSON.parse(File.read(context_file))

properties = {}
(job_spec['properties'] || {}).each do |name, definition|
  value = lookup(context['properties'] || {}, name)
  value = (definition || {})['default'] if value.nil?
  store(properties, name, value)
end
declared = (job_spec['consumes'] || []).map { |c| c['name'] }
links = (context['links'] || {}).select { |name, _| declared.include?(name) }

ctx = Context.new(context['spec'], properties, links)
files = { 'monit' => 'monit' }
(job_spec['templates'] || {}).each { |src, dst| files[File.join('templates', src)] = dst }
files.each do |src, dst|
  out = File.join(out_dir, dst)
  FileUtils.mkdir_p(File.dirname(out))
  begin
    File.write(out, ctx.render(File.read(File.join(job_dir, src))))
  rescue StandardError => e
    abort "Error filling in template '#{src}': #{e.message}"
  end
end
